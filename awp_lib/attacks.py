"""Input attacks (Appendix A): FGSM (Eq. 13), PGD (Eq. 14) under L∞ and L2, and CW∞.

Conventions (as in torchattacks): inputs ``x`` are in [0, 1]; every adversarial example lies
in the ε-ball around ``x`` *and* in [0, 1]. Gradients are taken of the summed loss with
respect to the input only, so the model's parameter gradients are never touched.

BN mode during an attack is an explicit argument, ``bn_mode``:

* ``"eval"`` (default): BN uses its running statistics; nothing in the model changes.
* ``"train"``: BN uses batch statistics *and updates its running statistics* at every attack
  step (what the Madry/Rice et al. AT code does while training).
* ``"current"``: leave the model's modes as they are.

The model's own train/eval flags are restored afterwards.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .validate import check_choice

NORMS = ("linf", "l2")
LOSSES = ("ce", "cw")
BN_MODES = ("eval", "train", "current")


def check_eps(eps: float, norm: str) -> None:
    """ε must be positive; an L∞ ε above 1 cannot be meant for inputs in [0, 1]."""
    check_choice("norm", norm, NORMS)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
        raise ValueError(f"eps={eps!r} is invalid: it must be a positive number (e.g. 8/255 for linf, 0.5 for l2)")
    if norm == "linf" and eps > 1:
        raise ValueError(f"eps={eps!r} is above 1 under the linf norm, for inputs in [0, 1]; did you mean {eps}/255?")


def _check_batch(x, y):
    """``y``: N class indices, or N x K class probabilities (soft targets, e.g. mixup)."""
    if not torch.is_tensor(x) or not torch.is_tensor(y) or x.dim() < 2 or y.dim() not in (1, 2) or len(x) != len(y):
        raise ValueError(f"mismatched shapes: x {tuple(x.shape)} and y {tuple(y.shape)}; expected x of shape "
                         "N x ... and y of shape N")


@contextlib.contextmanager
def attack_mode(model, bn_mode: str = "eval"):
    """Put ``model`` in the requested BN mode with parameters frozen; restore both afterwards."""
    check_choice("bn_mode", bn_mode, BN_MODES)
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad) for p in model.parameters()]
    if bn_mode != "current":
        model.train(bn_mode == "train")
    for p, _ in params:
        p.requires_grad_(False)  # no graph for weight gradients: a cheaper backward
    try:
        with torch.enable_grad():  # attacks work even when called under torch.no_grad()
            yield model
    finally:
        for m, t in modes:
            m.training = t
        for p, r in params:
            p.requires_grad_(r)


def per_example_norm(v: torch.Tensor) -> torch.Tensor:
    """L2 norm of each example, shaped to broadcast against ``v``."""
    return v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (v.dim() - 1)))


def project(delta: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """Π_ε: the closest point of the ε-ball (L∞: clip each coordinate; L2: rescale onto the sphere)."""
    check_choice("norm", norm, NORMS)
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return delta * (eps / per_example_norm(delta)).clamp(max=1.0)


def init_delta(x: torch.Tensor, eps: float, norm: str = "linf") -> torch.Tensor:
    """A δ drawn uniformly inside the ε-ball (Algorithm 2, line 7), clipped so x + δ stays in [0, 1].

    The draws fill δ in the logical order of ``x`` (not its memory layout), so a channels-last
    batch gets the δ of the same batch in the default layout, and a batch cut in consecutive
    pieces the δ of the whole (from the same generator state)."""
    if norm == "linf":
        delta = torch.empty(x.shape, dtype=x.dtype, device=x.device).uniform_(-eps, eps)
    else:
        d = x[0].numel()
        u = torch.randn(x.shape, dtype=x.dtype, device=x.device)
        radius = eps * torch.rand(len(x), device=x.device).pow(1.0 / d).view(-1, *([1] * (x.dim() - 1)))
        delta = u / per_example_norm(u) * radius
    return (x + delta).clamp(0, 1) - x


def margin_loss(logits: torch.Tensor, y: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """CW margin max_{k≠y} z_k − z_y: positive exactly when the example is misclassified."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    out = other - z_y
    return out.sum() if reduction == "sum" else out


def attack_loss(logits, y, loss="ce", reduction: str = "sum"):
    """The loss an attack ascends: cross-entropy (``ce``), the CW margin (``cw``), or a callable
    ``loss(logits, y)`` returning the summed loss (TRADES ascends a KL divergence this way)."""
    if callable(loss):
        return loss(logits, y)
    check_choice("loss", loss, LOSSES)
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction=reduction)
    return margin_loss(logits, y, reduction)


def _step(grad: torch.Tensor, norm: str) -> torch.Tensor:
    return grad.sign() if norm == "linf" else grad / per_example_norm(grad)


def fgsm(model, x, y, eps: float, norm: str = "linf", random_start: bool = False, bn_mode: str = "eval"):
    """FGSM (Eq. 13): one step of size ε along sign(∇ₓℓ) (L∞) or ∇ₓℓ/‖∇ₓℓ‖ (L2)."""
    return pgd(model, x, y, eps, alpha=eps, steps=1, norm=norm, random_start=random_start, bn_mode=bn_mode)


def pgd(model, x, y, eps: float, alpha: float, steps: int, norm: str = "linf", random_start: bool = True,
        restarts: int = 1, loss="ce", bn_mode: str = "eval", delta0: torch.Tensor | None = None):
    """PGD (Eq. 14): K₁ = ``steps`` steps of size η₁ = ``alpha``, each followed by Π_ε and a clip to [0, 1].

    With ``random_start`` each restart begins uniformly inside the ball (or at ``delta0`` when
    given, e.g. TRADES' 0.001·N(0, I)); with ``restarts > 1`` each example keeps its worst
    restart (misclassified first, then highest loss). ``loss``: ``"ce"``, ``"cw"`` or a callable.
    """
    check_eps(eps, norm)
    if not callable(loss):
        check_choice("loss", loss, LOSSES)
    _check_batch(x, y)
    if not alpha > 0 or not (isinstance(steps, int) and steps >= 1) or not (isinstance(restarts, int) and restarts >= 1):
        raise ValueError(f"alpha={alpha!r}, steps={steps!r}, restarts={restarts!r}: alpha must be > 0, "
                         "steps and restarts positive integers")
    x = x.detach()
    best, best_score = x.clone(), None
    with attack_mode(model, bn_mode):
        for _ in range(restarts):
            if delta0 is not None:
                delta = (x + project(delta0, eps, norm)).clamp(0, 1) - x
            else:
                delta = init_delta(x, eps, norm) if random_start else torch.zeros_like(x)
            for _ in range(steps):
                delta.requires_grad_(True)
                grad, = torch.autograd.grad(attack_loss(model(x + delta), y, loss), delta)
                delta = (project(delta.detach() + alpha * _step(grad, norm), eps, norm) + x).clamp_(0, 1) - x
            x_adv = (x + delta).detach()
            if restarts == 1:
                return x_adv
            with torch.no_grad():
                logits = model(x_adv)
                wrong = logits.argmax(1) != (y if y.dim() == 1 else y.argmax(1))
                score = (0 if callable(loss) else attack_loss(logits, y, loss, "none")) + 1e6 * wrong
            if best_score is None:
                best, best_score = x_adv, score
            else:
                better = score > best_score
                best[better], best_score = x_adv[better], torch.maximum(score, best_score)
    return best


def cw(model, x, y, eps: float, alpha: float, steps: int, norm: str = "linf", **kw):
    """CW∞ as used in AT papers: PGD ascending the margin loss max_{k≠y} z_k − z_y."""
    return pgd(model, x, y, eps, alpha, steps, norm=norm, loss="cw", **kw)
