"""``python -m awp_lib evaluate CHECKPOINT``: the evaluation battery on any checkpoint.

A checkpoint of one of our runs (``<run>/checkpoints/X.pt``) needs no flag: architecture,
dataset, threat model and test split come from ``<run>/config.json``. A third-party file (the
published AWP, TRADES, MART, RobustBench models) needs ``--model`` and ``--dataset``; its input
normalisation (``--normalize``) defaults by architecture, see :mod:`awp_lib.checkpoints`.
Writes ``evaluate-<stem>.json`` (accuracies as fractions) and ``evaluate-<stem>.md`` (a table
in %) to ``--out`` (default: ``<run>/evaluate/``, or ``evaluate/`` beside a third-party file).
"""
from __future__ import annotations

import json
import sys
import time
from importlib import metadata
from pathlib import Path

from . import checkpoints
from .data import Loader
from .evaluate import ATTACKS, default_alpha, evaluate
from .io import save_text
from .validate import check_choice

# Test images per step of the progress bar (and per AutoAttack call); the attacks batch them
# as every evaluation does (awp_lib.evalcopy.eval_batch).
IMAGES_PER_STEP = 1000

LABELS = {"natural": "natural", "fgsm": "FGSM", "pgd20": "PGD-20", "pgd100": "PGD-100", "cw": "CW∞",
          "autoattack": "AutoAttack (standard)"}


def parse_attacks(text) -> tuple[str, ...]:
    names = [a.strip() for a in text.split(",") if a.strip()] if isinstance(text, str) else list(text)
    if not names:
        raise ValueError(f"--attacks {text!r} is empty; valid choices: {', '.join(ATTACKS)}")
    for a in names:
        check_choice("attack (--attacks)", a, ATTACKS)
    return tuple(dict.fromkeys(names))


def fmt_eps(eps: float) -> str:
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 and round(k) else f"{eps:g}"


def evaluate_checkpoint(checkpoint, model: str | None = None, dataset: str | None = None,
                        normalize: str | None = None, attacks=ATTACKS, n: int | None = None,
                        eps: float | None = None, norm: str | None = None, out=None, device="auto",
                        root=None, width: int | None = None, seed: int = 0,
                        progress: bool = True, log=print) -> dict:
    """Run ``attacks`` on ``n`` test images (``None``: all) and write JSON + markdown to ``out``.

    Returns the JSON's content: ``accuracy`` (fractions), ``seconds``, the model and where its
    settings came from, the threat model, the images, and the paths written.
    """
    attacks = parse_attacks(attacks)
    dev = checkpoints.resolve_device(device)
    loaded = checkpoints.load_model(checkpoint, model, dataset, normalize, width, dev)
    eps, norm = checkpoints.default_threat(loaded, eps, norm)
    (x, y), which = checkpoints.images(loaded, "test", n, root)
    loader = Loader(x, y, IMAGES_PER_STEP, device=dev)  # attacked in batches of evalcopy.eval_batch
    for line in loaded.notes:
        log(line)
    log(f"{loaded.arch} on {loaded.dataset} ({loaded.normalize}), {norm} eps={fmt_eps(eps)}, {which}, "
        f"device {dev}")
    acc, secs = {}, {}
    for a in attacks:
        t0 = time.perf_counter()
        acc[a] = evaluate(loaded.model, loader, eps, norm, attacks=(a,), seed=seed, progress=progress)[a]
        secs[a] = time.perf_counter() - t0
        log(f"{LABELS[a]}: {100 * acc[a]:.2f}% ({secs[a]:.1f} s)")
    out = Path(out) if out is not None else (loaded.run or loaded.path.parent) / "evaluate"
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"evaluate-{loaded.path.stem}"
    result = {**loaded.describe(), "split": "test", "n": len(y), "images": which,
              "threat": {"norm": norm, "eps": eps, "alpha": default_alpha(eps, norm)},
              "accuracy": acc, "seconds": secs, "seed": seed, "device": str(dev), "versions": _versions(),
              "json": str(stem.with_suffix(".json")), "markdown": str(stem.with_suffix(".md"))}
    save_text(json.dumps(result, indent=1), stem.with_suffix(".json"))
    save_text(markdown(result), stem.with_suffix(".md"))
    return result


def markdown(result: dict) -> str:
    t = result["threat"]
    rows = "\n".join(f"| {LABELS[a]} | {100 * v:.2f} | {result['seconds'][a]:.1f} |"
                     for a, v in result["accuracy"].items())
    return (f"# Evaluation of `{result['checkpoint']}`\n\n"
            f"{result['model']} on {result['dataset']} (normalize: {result['normalize']}), "
            f"{'L∞' if t['norm'] == 'linf' else 'L2'} ε = {fmt_eps(t['eps'])} (step {t['alpha']:.4g}), "
            f"{result['images']}, seed {result['seed']}, {result['device']}.\n\n"
            "| attack | accuracy (%) | time (s) |\n| --- | ---: | ---: |\n" + rows + "\n")


def _versions() -> dict:
    out = {}
    for pkg in ("torch", "pyautoattack"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def register_cli(sub) -> None:
    p = sub.add_parser("evaluate", help="natural, FGSM, PGD-20, PGD-100, CW∞ and AutoAttack accuracy of any "
                       "checkpoint (ours or a published one); writes JSON and a markdown table",
                       description=__doc__.split("\n\n", 1)[1].replace("``", "").replace(":mod:", ""))
    p.add_argument("checkpoint", help="<run>/checkpoints/X.pt of our runs, or a third-party file (--model, --dataset)")
    p.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma list (default: all of {','.join(ATTACKS)})")
    p.add_argument("--n", type=int, default=None, help="test images, the first n (default: the whole test split)")
    p.add_argument("--out", default=None, help="folder for the JSON and markdown (default: <run>/evaluate/)")
    p.add_argument("--seed", type=int, default=0)
    checkpoints.add_model_args(p)
    p.set_defaults(fn=_cmd)


def _cmd(args) -> None:
    res = evaluate_checkpoint(args.checkpoint, args.model, args.dataset, args.normalize, args.attacks, args.n,
                              args.eps, args.norm, args.out, args.device, args.root, args.width,
                              args.seed, progress=True, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps({"json": res["json"], "markdown": res["markdown"], "accuracy": res["accuracy"]}))
