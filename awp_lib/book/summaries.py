"""Run summaries: the headline numbers of one run (:func:`best_last`) and of several seeds
(:func:`summarize`, :func:`paired`), read off the metrics the training loop writes."""
from __future__ import annotations

import statistics

import numpy as np


def best_last(rows: list[dict]) -> dict:
    """Headline numbers of a run: best-by-validation and last epoch (accuracies as fractions).

    The best epoch is chosen by the per-epoch monitor's validation robust accuracy; the numbers
    are the final full-strength evaluation's (``final_*``: PGD-``final_attack_steps`` on the whole
    test split) when the run made one, else the monitor's: :func:`attacks_of` says which."""
    ev, best, last, final = _selected(rows)
    get = (lambda r, k: r[f"final_{k}"]) if final else (lambda r, k: r[k])
    out = {"best_epoch": best["epoch"], "best_test_robust": get(best, "test_robust"),
           "best_test_natural": get(best, "test_natural"), "last_test_robust": get(last, "test_robust"),
           "last_test_natural": get(last, "test_natural"), "last_train_robust": get(last, "train_robust"),
           "max_test_robust": max(r["test_robust"] for r in ev)}
    out["last_gap"] = out["last_train_robust"] - out["last_test_robust"]
    out["drop"] = out["best_test_robust"] - out["last_test_robust"]
    # the monitor's validation numbers: what a miniature or a schedule may be chosen on
    out["best_val_robust"], out["last_val_robust"] = best["val_robust"], last["val_robust"]
    out["val_drop"] = best["val_robust"] - last["val_robust"]
    # the robust test loss (Stutz et al.'s criterion): the final evaluation's where it recorded
    # it (on the same images as the accuracies), else the monitor's
    loss = "final_test_robust_loss" if final and "final_test_robust_loss" in last else "test_robust_loss"
    if loss in last and loss in best:
        out["best_test_robust_loss"], out["last_test_robust_loss"] = best[loss], last[loss]
        out["loss_rise"] = last[loss] / best[loss] - 1   # a fraction: 0.2 = 20 % above best's
        out["min_test_robust_loss"] = min(r["test_robust_loss"] for r in ev)  # the monitor's curve
    return out


def final_numbers(rows: list[dict]) -> dict:
    """The training loop's final evaluation of the best and the last checkpoint on the test images:
    ``{"best": {"natural": ..., "pgd20": ...}, "last": {...}}`` (the attack named as it ran)."""
    _, best, last, final = _selected(rows)
    if not final:
        raise ValueError("the run made no final evaluation (final_attack_steps = 0)")
    return {which: {"natural": r["final_test_natural"],
                    r["final_attack"].lower().replace("-", ""): r["final_test_robust"]}
            for which, r in (("best", best), ("last", last))}


def summarize(runs: list[list[dict]]) -> dict:
    """:func:`best_last` of several seeds of one experiment: the means of its keys, with ``std``
    and ``se`` (standard error, std/sqrt(n)) per key and the ``per_seed`` values."""
    per_seed = [best_last(rows) for rows in runs]
    keys = [k for k in per_seed[0] if all(k in p for p in per_seed)]
    stats = {k: mean_std([p[k] for p in per_seed]) for k in keys}
    n = len(per_seed)
    return {**{k: m for k, (m, _) in stats.items()}, "std": {k: sd for k, (_, sd) in stats.items()},
            "se": {k: sd / n ** 0.5 for k, (_, sd) in stats.items()}, "n": n, "per_seed": per_seed}


def paired(a: dict, b: dict, key: str) -> dict:
    """``b − a`` of :func:`summarize` results seed by seed (the same seeds in the same order):
    ``{"mean", "se", "per_seed"}``; ``se`` is NaN for one seed."""
    diffs = [pb[key] - pa[key] for pa, pb in zip(a["per_seed"], b["per_seed"])]
    mean, sd = mean_std(diffs)
    return {"mean": mean, "se": sd / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan"), "per_seed": diffs}


def mean_std(values) -> tuple[float, float]:
    vals = list(values)
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def stack(runs: list[list[dict]], key: str):
    """``(epochs, values)`` of ``key`` at the evaluated epochs of several runs (one row per run;
    accuracies in per cent, losses as they are), as numpy arrays."""
    evaluated = [[r for r in rows if "val_robust" in r] for rows in runs]
    scale = 1 if key.endswith("_loss") else 100
    return (np.array([r["epoch"] for r in evaluated[0]]),
            scale * np.array([[r[key] for r in e] for e in evaluated]))


def correlation(a, b, method: str = "pearson") -> float:
    """Pearson or Spearman correlation of two sequences; NaN for fewer than 3 points or a constant one."""
    import pandas as pd  # optional dependency (the pages)
    a, b = pd.Series(list(a), dtype=float), pd.Series(list(b), dtype=float)
    return a.corr(b, method=method) if len(a) >= 3 and a.std() > 0 and b.std() > 0 else float("nan")


def attacks_of(rows: list[dict], cfg=None) -> dict:
    """Which attack produced a run's numbers: ``monitor`` (the per-epoch curves and the choice of
    the best epoch) and ``headline`` (:func:`best_last`), e.g. ``PGD-5`` and ``PGD-20``."""
    _, _, last, final = _selected(rows)
    monitor = f"PGD-{cfg.eval_attack_steps}" if cfg is not None else "the per-epoch monitor"
    return {"monitor": monitor, "headline": last["final_attack"] if final else monitor}


def has_final(rows: list[dict]) -> bool:
    """Whether a run's headline numbers (:func:`best_last`) are its final evaluation's."""
    return _selected(rows)[3]


def _selected(rows: list[dict]):
    """(evaluated rows, best-by-validation row, last row, whether both have final numbers)."""
    ev = [r for r in rows if "val_robust" in r]
    best, last = max(ev, key=lambda r: r["val_robust"]), ev[-1]
    return ev, best, last, "final_test_robust" in best and "final_test_robust" in last
