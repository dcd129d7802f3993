"""The evaluation battery of the paper: natural, FGSM, PGD-20, PGD-100, CW∞ and AutoAttack accuracy."""
from __future__ import annotations

import logging
import sys

import torch
from tqdm import tqdm

from . import attacks as A
from .evalcopy import chunks, eval_batch, eval_copy
from .validate import check_choice

ATTACKS = ("natural", "fgsm", "pgd20", "pgd100", "cw", "autoattack")
DEFAULT_ATTACKS = ("natural", "fgsm", "pgd20", "pgd100", "cw")


def default_alpha(eps: float, norm: str) -> float:
    """The paper's test step: 2/255 for ε = 8/255 (ε/4) under L∞; 15/255 for ε = 128/255 under L2."""
    return eps / 4 if norm == "linf" else eps * 15 / 128


def autoattack(model, x, y, eps: float, norm: str = "linf", seed: int = 0, verbose: bool = False):
    """Standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square; 100 APGD steps) by its authors (``pyautoattack``),
    on :func:`awp_lib.evalcopy.eval_copy` of ``model`` in batches of :func:`awp_lib.evalcopy.eval_batch`.

    ``verbose``: its log (robust accuracy after each attack, times) goes to stderr.
    """
    return _autoattack(eval_copy(model), x, y, eps, norm, seed, verbose)


def _autoattack(fast, x, y, eps, norm, seed, verbose):
    """:func:`autoattack` on a model that is already an :func:`awp_lib.evalcopy.eval_copy`."""
    from pyautoattack import AutoAttack  # optional dependency (AutoAttack)
    log = logging.getLogger("auto-attack")
    handler, level = logging.StreamHandler(sys.stderr), log.level
    if verbose:
        handler.setFormatter(logging.Formatter("  autoattack: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
    try:
        adversary = AutoAttack(fast, eps=eps, norm={"linf": "Linf", "l2": "L2"}[norm], version="standard",
                               device=x.device, seed=seed)
        x_adv = adversary.run_standard_evaluation(x, y, batch_size=eval_batch(x.device))[0]
    finally:
        if verbose:
            log.removeHandler(handler)
            log.setLevel(level)
    return x_adv


@torch.no_grad()
def predict(model, x) -> torch.Tensor:
    """The model's predicted labels for the inputs ``x`` (no gradient)."""
    return model(x).argmax(1)


def _correct(model, x, y) -> int:
    return (model(x).argmax(1) == y).sum().item()


def evaluate(model, loader, eps: float, norm: str = "linf", attacks=DEFAULT_ATTACKS, alpha: float | None = None,
             max_batches: int | None = None, seed: int = 0, progress: bool = False) -> dict[str, float]:
    """Accuracy (a fraction in [0, 1]) of ``model`` on ``loader`` under each attack in ``attacks``.

    Attacks run with BN in eval mode, on :func:`awp_lib.evalcopy.eval_copy` of ``model`` in
    batches of :func:`awp_lib.evalcopy.eval_batch` (``model`` itself is not changed).
    PGD-20/100 and CW∞ use ``alpha`` (default :func:`default_alpha`) and a random start; ``cw`` is 20 steps on the margin loss.
    ``autoattack`` is the standard version of Croce & Hein (slow: ask for it explicitly).
    ``progress``: a bar over batches on stderr (in a terminal) and AutoAttack's log.
    """
    A.check_eps(eps, norm)
    for a in attacks:
        check_choice("attack", a, ATTACKS)
    alpha = default_alpha(eps, norm) if alpha is None else alpha
    fast = eval_copy(model)
    run = {
        "natural": lambda x, y: x,
        "fgsm": lambda x, y: A.fgsm(fast, x, y, eps, norm),
        "pgd20": lambda x, y: A.pgd(fast, x, y, eps, alpha, 20, norm),
        "pgd100": lambda x, y: A.pgd(fast, x, y, eps, alpha, 100, norm),
        "cw": lambda x, y: A.cw(fast, x, y, eps, alpha, 20, norm),
    }
    torch.manual_seed(seed)
    correct, n = dict.fromkeys(attacks, 0), 0
    bar = _bar(progress, loader, max_batches, "+".join(attacks))
    try:
        for i, (xs, ys) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            for a in attacks:
                if a == "autoattack":  # batched by AutoAttack itself
                    x_adv = _autoattack(fast, xs, ys, eps, norm, seed, progress)
                    correct[a] += _correct(fast, x_adv, ys)
                    continue
                for x, y in chunks(fast, xs, ys):
                    correct[a] += _correct(fast, run[a](x, y), y)
            n += len(ys)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(" ".join(f"{a}={c / n:.3f}" for a, c in correct.items()))
    finally:
        if bar is not None:
            bar.close()
    return {a: c / max(n, 1) for a, c in correct.items()}


def _bar(progress, loader, max_batches, desc):
    if not (progress and sys.stderr.isatty()):
        return None
    total = len(loader) if hasattr(loader, "__len__") else None
    total = min(total, max_batches) if total is not None and max_batches is not None else total
    return tqdm(total=total, desc=desc, unit="batch", file=sys.stderr, leave=False)
