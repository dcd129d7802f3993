"""Weight loss landscape (Algorithm 1, Appendix B) and a flatness number per checkpoint.

ρ(w) is the robust loss: the mean cross-entropy on adversarial examples made by PGD *against
the weights being measured*. For every point w + αd (or w + αd + βe) the examples are made
afresh (Algorithm 1, lines 8-16).

BN handling: the model is evaluated in **eval mode**, i.e. every perturbed model uses the
running statistics of w (the checkpoint's). Perturbing a kernel therefore does not
re-estimate BN statistics; this is the choice the book states and keeps explicit.

Efficiency: weights are perturbed in place from one saved copy of w and restored
bit-identically afterwards; each point is attacked on :func:`awp_lib.evalcopy.eval_copy` of the
moved model (BN folded, made after the move), and a point met twice (α = 0 in every direction,
the centre of a 2-D grid) is attacked once.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import attacks, checkpoints
from .awp import AWP
from .checkpoints import add_model_args
from .evalcopy import chunks, eval_copy
from .evaluate import default_alpha
from .io import save_text
from .precision import weights_changed
from .validate import check_choice


# ----------------------------------------------------------------------------- directions (lines 2-7)
def random_direction(model: nn.Module, seed: int, include_bn: bool = False) -> dict[str, torch.Tensor]:
    """A filter-normalised Gaussian direction d (Li et al. 2018), as ``{parameter name: tensor}``.

    For every conv/linear kernel, each filter d_{l,j} (a slice along the output dimension) is
    rescaled to the Frobenius norm of the same filter of w: d_{l,j} ← d_{l,j}/‖d_{l,j}‖·‖w_{l,j}‖.
    Biases and BN parameters get zero (Li et al.'s default) unless ``include_bn``, in which
    case each such vector is rescaled as a whole to the norm of w's.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in model.named_parameters():
        d = torch.randn(p.shape, generator=g).to(p.device, p.dtype)
        if p.dim() > 1:
            dn = d.flatten(1).norm(dim=1).clamp_min(1e-12)
            wn = p.detach().flatten(1).norm(dim=1)
            out[name] = d * (wn / dn).view(-1, *([1] * (p.dim() - 1)))
        elif include_bn:
            out[name] = d * (p.detach().norm() / d.norm().clamp_min(1e-12))
        else:
            out[name] = torch.zeros_like(p)
    return out


@contextlib.contextmanager
def moved(model: nn.Module, directions: list[dict], coeffs: list[float] | None = None):
    """Within the block, ``model`` has weights w + Σ cᵢ dᵢ.

    Yields a function ``go(coeffs)`` that sets the weights to w + Σ cᵢ dᵢ in place. On exit the
    saved w is copied back, so parameters end bit-identical to before.
    """
    params = dict(model.named_parameters())
    names = [n for n in params if any(n in d and d[n].abs().sum() > 0 for d in directions)]
    saved = {n: params[n].detach().clone() for n in names}

    @torch.no_grad()
    def go(cs):
        for n in names:
            new = saved[n].clone()
            for c, d in zip(cs, directions):
                if c:
                    new.add_(d[n], alpha=float(c))
            params[n].copy_(new)
        weights_changed()
    try:
        if coeffs is not None:
            go(coeffs)
        yield go
    finally:
        with torch.no_grad():
            for n in names:
                params[n].copy_(saved[n])
        weights_changed()


# ----------------------------------------------------------------------------- ρ (lines 8-15)
def robust_losses(model, batches, eps: float, alpha: float, steps: int, norm: str = "linf",
                  seed: int = 0, return_adversarial: bool = False):
    """Per-example CE on fresh PGD examples against the model as it is now (eval mode), computed
    on :func:`awp_lib.evalcopy.eval_copy` of it (taken here, so after any weight change). With
    ``return_adversarial``, also the examples, one tensor per batch."""
    torch.manual_seed(seed)
    fast = eval_copy(model)
    out, adversarial = [], []
    for xs, ys in batches:
        advs = []
        for x, y in chunks(fast, xs, ys):
            x_adv = attacks.pgd(fast, x, y, eps, alpha, steps, norm, bn_mode="eval")
            with torch.no_grad():
                out.append(F.cross_entropy(fast(x_adv), y, reduction="none"))
            if return_adversarial:
                advs.append(x_adv)
        if return_adversarial:
            adversarial.append(torch.cat(advs).contiguous())
    losses = torch.cat(out)
    return (losses, adversarial) if return_adversarial else losses


def symmetric_grid(a_max: float, points: int) -> list[float]:
    """``points`` values (made odd, at least 3) evenly spaced on [-a_max, a_max], the middle one
    exactly 0: the α grid of a landscape."""
    m = max(3, points + (points % 2 == 0))
    return [0.0 if 2 * i == m - 1 else a_max * (2 * i / (m - 1) - 1) for i in range(m)]


def snapshot(model) -> dict:
    """A copy of the model's state (parameters and buffers), for :func:`unchanged`."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def unchanged(model, before: dict) -> bool:
    """Whether the model's state is bit-identical to the :func:`snapshot` ``before``: a
    landscape moves the weights and must put them back exactly."""
    return all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _check_grid(name, values):
    vals = list(values)
    if len(vals) < 1 or any(not math.isfinite(v) for v in vals):
        raise ValueError(f"{name}={vals!r} is invalid: give at least one finite value")
    if sorted(vals) != vals or len(set(vals)) != len(vals):
        raise ValueError(f"{name}={vals!r} is invalid: values must be strictly increasing")
    return vals


def _batches(data, n: int | None, batch_size: int | None = None):
    """Materialise up to ``n`` examples from ``(x, y)`` tensors (uint8 or float) or a loader: one
    batch of them (``batch_size`` None; the attacks batch them as every evaluation does) or
    batches of ``batch_size``."""
    if batch_size is not None and batch_size <= 0:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        x, y = data
        if n is not None and not 0 < n <= len(y):
            raise ValueError(f"n={n!r} is invalid: a subset size between 1 and {len(y)}")
        x, y = x[:n], y[:n]
        x = x.float().div(255) if x.dtype == torch.uint8 else x
        b = batch_size or len(y)
        return [(x[i:i + b], y[i:i + b]) for i in range(0, len(y), b)]
    out, k = [], 0
    for x, y in data:
        out.append((x, y))
        k += len(y)
        if n is not None and k >= n:
            break
    return out


def _attack_seed(seed: int, j: int) -> int:
    """The seed of the attack at the ``j``-th α of a 1-D landscape (the same for every direction)."""
    return seed * 7919 + j


def robust_loss(model, data, alpha_index: int = 0, seed: int = 0, eps: float = 0.1,
                attack_alpha: float | None = None, attack_steps: int = 10, norm: str = "linf",
                n: int | None = 1000) -> float:
    """ρ(w): the mean robust loss at the model's weights as :func:`landscape_1d` measures its point
    of index ``alpha_index`` (the same examples, batches and attack seed), so that at α = 0 the
    two agree to rounding."""
    attack_alpha = default_alpha(eps, norm) if attack_alpha is None else attack_alpha
    batches = _batches(data, n)
    return robust_losses(model, batches, eps, attack_alpha, attack_steps, norm,
                         seed=_attack_seed(seed, alpha_index)).mean().item()


def landscape_1d(model, data, alphas, k: int = 1, seed: int = 0, eps: float = 0.1, attack_alpha: float | None = None,
                 attack_steps: int = 10, norm: str = "linf", n: int | None = 1000,
                 include_bn: bool = False, progress: bool = False) -> dict:
    """ρ(w + αd) for each α in ``alphas`` along ``k`` filter-normalised directions (seeds seed..seed+k-1).

    ``data``: ``(x, y)`` tensors (a train or test subset) or a loader; ``n`` examples are used.
    Returns ``alphas``, ``loss`` (k x len(alphas)), ``stderr`` (standard error of each point over
    examples), ``mean``/``spread`` over directions (Figure 5's repeatability). The point α = 0 is
    w itself with the same attack seed in every direction: it is attacked once.
    """
    alphas = _check_grid("alphas", alphas)
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"k={k!r} is invalid: the number of directions must be a positive integer")
    attack_alpha = default_alpha(eps, norm) if attack_alpha is None else attack_alpha
    batches = _batches(data, n)
    loss = torch.zeros(k, len(alphas))
    stderr = torch.zeros(k, len(alphas))
    bar = _progress(progress, k * len(alphas))
    at_w = {}  # the alpha = 0 point, shared by the directions
    for i in range(k):
        d = random_direction(model, seed + i, include_bn)
        with moved(model, [d]) as go:
            for j, a in enumerate(alphas):
                if a == 0 and at_w:
                    loss[i, j], stderr[i, j] = at_w["loss"], at_w["stderr"]
                else:
                    go([a])
                    ls = robust_losses(model, batches, eps, attack_alpha, attack_steps, norm,
                                       seed=_attack_seed(seed, j))
                    loss[i, j], stderr[i, j] = ls.mean(), ls.std() / math.sqrt(len(ls))
                    if a == 0:
                        at_w.update(loss=loss[i, j].item(), stderr=stderr[i, j].item())
                if bar:
                    bar.update(1)
    if bar:
        bar.close()
    return {"alphas": alphas, "loss": loss.tolist(), "stderr": stderr.tolist(), "mean": loss.mean(0).tolist(),
            "spread": (loss.std(0) if k > 1 else torch.zeros(len(alphas))).tolist(), "k": k, "seed": seed,
            "n": sum(len(y) for _, y in batches)}


def landscape_2d(model, data, alphas, betas=None, seed: int = 0, eps: float = 0.1, attack_alpha: float | None = None,
                 attack_steps: int = 10, norm: str = "linf", n: int | None = 500,
                 include_bn: bool = False, progress: bool = False) -> dict:
    """g(α, β) = ρ(w + αd + βe) on a grid and the relative landscape |g(α, β) − g(0, 0)| (Figure 6)."""
    alphas = _check_grid("alphas", alphas)
    betas = alphas if betas is None else _check_grid("betas", betas)
    attack_alpha = default_alpha(eps, norm) if attack_alpha is None else attack_alpha
    batches = _batches(data, n)
    d, e = random_direction(model, seed, include_bn), random_direction(model, seed + 10_000, include_bn)
    g = torch.zeros(len(alphas), len(betas))
    se = torch.zeros_like(g)
    bar = _progress(progress, g.numel())
    with moved(model, [d, e]) as go:
        go([0.0, 0.0])
        ls0 = robust_losses(model, batches, eps, attack_alpha, attack_steps, norm, seed=seed)
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                if a == 0 and b == 0:
                    ls = ls0  # the centre, attacked with the same seed
                else:
                    go([a, b])
                    ls = robust_losses(model, batches, eps, attack_alpha, attack_steps, norm, seed=seed)
                g[i, j], se[i, j] = ls.mean(), ls.std() / math.sqrt(len(ls))
                if bar:
                    bar.update(1)
    if bar:
        bar.close()
    return {"alphas": alphas, "betas": betas, "loss": g.tolist(), "stderr": se.tolist(), "center": ls0.mean().item(),
            "relative": (g - ls0.mean()).abs().tolist(), "seed": seed, "n": sum(len(y) for _, y in batches)}


# ----------------------------------------------------------------------------- flatness (Stutz et al. 2021)
def flatness(model, data, alpha0: float = 0.5, k: int = 5, gamma: float = 1e-2, awp_steps: int = 5, seed: int = 0,
             eps: float = 0.1, attack_alpha: float | None = None, attack_steps: int = 10, norm: str = "linf",
             n: int | None = 1000, awp_batch: int = 500) -> dict:
    """Flatness of the robust loss around w, two ways (larger = sharper):

    * ``average``: mean over k random filter-normalised directions of
      [ρ(w + α₀d) + ρ(w − α₀d)]/2 − ρ(w);
    * ``worst``: ρ(w + v) − ρ(w) for v found by ``awp_steps`` AWP ascent steps with
      ‖v_l‖ ≤ γ‖w_l‖, one v per ``awp_batch`` examples, on the adversarial examples of ρ(w);
      ρ(w + v) with fresh PGD.
    """
    attack_alpha = default_alpha(eps, norm) if attack_alpha is None else attack_alpha
    curve = landscape_1d(model, data, [-alpha0, 0.0, alpha0], k, seed, eps, attack_alpha, attack_steps, norm, n)
    loss = torch.tensor(curve["loss"])
    rho0 = loss[:, 1].mean().item()
    average = ((loss[:, 0] + loss[:, 2]) / 2 - loss[:, 1]).mean().item()
    batches = _batches(data, n, awp_batch)
    was = model.training
    model.eval()
    awp = AWP(model, gamma, steps=awp_steps)
    rises = []
    try:
        for x, y in batches:
            base, (x_adv,) = robust_losses(model, [(x, y)], eps, attack_alpha, attack_steps, norm, seed=seed,
                                           return_adversarial=True)
            saved = [p.detach().clone() for p in awp.params]
            awp.perturb(lambda: F.cross_entropy(model(x_adv), y))
            worst = robust_losses(model, [(x, y)], eps, attack_alpha, attack_steps, norm, seed=seed)
            with torch.no_grad():  # restore exactly (w + v - v may differ from w in the last bit)
                for p, w in zip(awp.params, saved):
                    p.copy_(w)
            weights_changed()
            awp.v = None
            rises.append((worst.sum() - base.sum()).item())
    finally:
        model.train(was)
    return {"average": average, "worst": sum(rises) / curve["n"], "rho": rho0, "alpha0": alpha0, "k": k,
            "gamma": gamma, "n": curve["n"]}


def _progress(on, total):
    if not on:
        return None
    return tqdm(total=total, unit="point")


# ----------------------------------------------------------------------------- figures
def plot_1d(result: dict, ax=None, label: str | None = None, color=None):
    """Mean over directions with a ±1 std band (the spread of Figure 5)."""
    import matplotlib.pyplot as plt  # CLI start-up time
    ax = ax or plt.subplots(figsize=(4, 3))[1]
    a = torch.tensor(result["alphas"])
    m, s = torch.tensor(result["mean"]), torch.tensor(result["spread"])
    ax.plot(a, m, label=label, color=color)
    if result["k"] > 1:
        ax.fill_between(a, m - s, m + s, alpha=0.25, color=ax.lines[-1].get_color())
    ax.set_xlabel("α")
    ax.set_ylabel("robust loss ρ(w + αd)")
    return ax


def plot_2d(result: dict, kind: str = "contour", ax=None):
    """|g(α, β) − g(0, 0)| as contours or as a surface."""
    import matplotlib.pyplot as plt  # CLI start-up time
    A, B = torch.meshgrid(torch.tensor(result["alphas"]), torch.tensor(result["betas"]), indexing="ij")
    Z = torch.tensor(result["relative"])
    if kind == "surface":
        ax = ax or plt.figure(figsize=(4, 3.5)).add_subplot(projection="3d")
        ax.plot_surface(A.numpy(), B.numpy(), Z.numpy(), cmap="viridis")
    else:
        ax = ax or plt.subplots(figsize=(4, 3.5))[1]
        cs = ax.contourf(A.numpy(), B.numpy(), Z.numpy(), levels=12, cmap="viridis")
        plt.colorbar(cs, ax=ax)
    ax.set_xlabel("α")
    ax.set_ylabel("β")
    return ax


# ----------------------------------------------------------------------------- CLI
def _grid(text: str) -> list[float]:
    """``lo:hi:num`` (inclusive, like numpy.linspace) or a comma-separated list."""
    if ":" in text:
        lo, hi, num = text.split(":")
        num = int(num)
        if num < 1:
            raise ValueError(f"grid {text!r}: the number of points must be >= 1")
        return [float(lo) + (float(hi) - float(lo)) * i / max(num - 1, 1) for i in range(num)]
    return [float(v) for v in text.split(",")]


def _flag_grid(text) -> list[float]:
    """``--alphas``: a grid string or a list, with errors that name the flag."""
    try:
        return _check_grid("alphas", _grid(text) if isinstance(text, str) else list(text))
    except ValueError as e:
        raise ValueError(f"--alphas {text!r} is invalid ({e}); use lo:hi:num (e.g. -1:1:21) or a "
                         "strictly increasing comma list (e.g. -0.5,0,0.5)") from None


def landscape_checkpoint(checkpoint, dim: int = 1, alphas="-1:1:21", k: int = 5, subset: str = "train",
                         n: int | None = 1000, attack_steps: int = 10, seed: int = 0,
                         include_bn: bool = False, out=None, model: str | None = None,
                         dataset: str | None = None, normalize: str | None = None, width: int | None = None,
                         eps: float | None = None, norm: str | None = None, root=None, device="auto",
                         progress: bool | None = None, log=print) -> dict:
    """Algorithm 1 on any checkpoint: ρ(w + αd) along ``k`` directions (``dim`` 1) or on a 2-D grid.

    A checkpoint of one of our runs needs no model argument (its config gives the model, the
    threat model and the split); a third-party file needs ``model`` and ``dataset``
    (:func:`awp_lib.checkpoints.load_model`). ``n`` images of ``subset`` are used, capped at
    what the split holds (the log says so). Writes ``<stem>-<subset>-<dim>d.json`` and ``.png``
    to ``out`` (default: ``<run>/landscape/``, or ``landscape/`` beside a third-party file) and
    returns the result with the paths under ``json`` and ``png``.
    """
    import matplotlib.pyplot as plt  # CLI start-up time
    check_choice("--dim", dim, (1, 2))
    check_choice("--subset", subset, ("train", "test"))
    grid = _flag_grid(alphas)
    for flag, v in (("--k", k), ("--attack-steps", attack_steps)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{flag} {v!r} is invalid: a positive integer")
    dev = checkpoints.resolve_device(device)
    loaded = checkpoints.load_model(checkpoint, model, dataset, normalize, width, dev)
    eps, norm = checkpoints.default_threat(loaded, eps, norm)
    cfg = loaded.cfg
    attack_alpha = cfg.alpha if cfg is not None and (eps, norm) == (cfg.eps, cfg.norm) else default_alpha(eps, norm)
    (x, y), which = checkpoints.images(loaded, subset, n, root)
    for line in loaded.notes:
        log(line)
    log(f"landscape {dim}-D of {loaded.path.name}: {len(grid)} values of alpha"
        + (f" x {k} directions" if dim == 1 else f" x {len(grid)}") + f", PGD-{attack_steps} at {norm} "
        f"eps={eps:.4g}; {which}; device {dev}")
    kw = dict(eps=eps, attack_alpha=attack_alpha, attack_steps=attack_steps, norm=norm, n=None,
              seed=seed, include_bn=include_bn,
              progress=sys.stderr.isatty() if progress is None else progress)
    data = (x.to(dev), y.to(dev))
    label = loaded.path.stem
    if dim == 1:
        res = landscape_1d(loaded.model, data, grid, k=k, **kw)
        plot_1d(res, label=label)
    else:
        res = landscape_2d(loaded.model, data, grid, **kw)
        fig, axs = plt.subplots(1, 2, figsize=(8, 3.5))
        axs[1].remove()
        plot_2d(res, "contour", axs[0])
        plot_2d(res, "surface", fig.add_subplot(1, 2, 2, projection="3d"))
    out = Path(out) if out else (loaded.run or loaded.path.parent) / "landscape"
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{label}-{subset}-{dim}d"
    res = {**res, "checkpoint": loaded.describe(), "subset": subset, "images": which, "eps": eps, "norm": norm,
           "attack_steps": attack_steps, "json": str(stem.with_suffix(".json")), "png": str(stem.with_suffix(".png"))}
    save_text(json.dumps(res, indent=1), stem.with_suffix(".json"))
    plt.tight_layout()
    plt.savefig(stem.with_suffix(".png"), dpi=120)
    plt.close("all")
    return res


def register_cli(sub) -> None:
    p = sub.add_parser("landscape", help="1-D (k directions) or 2-D weight loss landscape of a checkpoint "
                       "(ours, or a published one with --model/--dataset)")
    p.add_argument("checkpoint", help="<run>/checkpoints/X.pt of our runs, or a third-party file (--model, --dataset)")
    p.add_argument("--dim", type=int, choices=[1, 2], default=1)
    p.add_argument("--alphas", default="-1:1:21", help="lo:hi:num or a comma list (default -1:1:21); "
                   "write --alphas=-0.5:0.5:11 when the first value is negative")
    p.add_argument("--k", type=int, default=5, help="directions for 1-D")
    p.add_argument("--subset", choices=["train", "test"], default="train")
    p.add_argument("--n", type=int, default=1000, help="examples (default 1000, capped at what the split holds)")
    p.add_argument("--attack-steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--include-bn", action="store_true")
    p.add_argument("--out", default=None, help="folder for the .json and .png (default: <run>/landscape/)")
    add_model_args(p)
    p.set_defaults(fn=_cmd)


def _cmd(args) -> None:
    import matplotlib  # CLI start-up time
    matplotlib.use("Agg")
    res = landscape_checkpoint(args.checkpoint, args.dim, args.alphas, args.k, args.subset, args.n,
                               args.attack_steps, args.seed, args.include_bn, args.out, args.model, args.dataset,
                               args.normalize, args.width, args.eps, args.norm, args.root, args.device,
                               log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps({"json": res["json"], "png": res["png"], "n": res["n"], "images": res["images"]}))
