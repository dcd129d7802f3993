"""Replication tables from run folders on disk (chapter 6 and ``reproduce``).

Every run folder (:class:`awp_lib.runs.RunDir`) holds its config and metrics; runs that differ only in their
seed form one table row, reported as mean ± std over seeds, in the format of the paper's
Tables 3-5 (best and last robust and natural accuracy).
"""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from types import SimpleNamespace

from ..runs import RunDir
from .claims import scale_of
from .results import load_results
from .summaries import attacks_of, best_last, has_final

# The paper's Tables 3-5 (PreActResNet-18, 5 runs, PGD-20 test robustness, %): (mean, std) for
# robust best, robust last, natural best, natural last. Quoted from the appendix, not recomputed.
PAPER = {
    ("svhn", "linf", "AT"): [(53.36, .09), (44.49, .27), (92.18, .15), (89.85, .33)],
    ("svhn", "linf", "AT-AWP"): [(59.12, .26), (55.87, .39), (93.85, .11), (92.59, .52)],
    ("svhn", "l2", "AT"): [(66.87, .25), (65.03, .24), (93.69, .12), (93.25, .28)],
    ("svhn", "l2", "AT-AWP"): [(72.57, .40), (67.73, .21), (95.95, .36), (95.22, .27)],
    ("cifar10", "linf", "AT"): [(52.79, .21), (44.44, .39), (85.57, .16), (84.56, .19)],
    ("cifar10", "linf", "AT-AWP"): [(55.39, .39), (54.73, .16), (82.00, .19), (81.11, .39)],
    ("cifar10", "l2", "AT"): [(69.15, .13), (65.93, .35), (89.57, .09), (88.96, .18)],
    ("cifar10", "l2", "AT-AWP"): [(72.69, .19), (72.08, .39), (90.18, .31), (89.71, .17)],
    ("cifar100", "linf", "AT"): [(27.22, .16), (20.82, .20), (56.33, .23), (54.61, .33)],
    ("cifar100", "linf", "AT-AWP"): [(30.71, .25), (30.28, .30), (54.19, .39), (54.39, .29)],
    ("cifar100", "l2", "AT"): [(41.33, .09), (35.27, .29), (62.65, .11), (60.50, .17)],
    ("cifar100", "l2", "AT-AWP"): [(45.60, .23), (44.66, .22), (65.07, .31), (64.40, .41)],
    ("cifar10", "linf", "AT+L1"): [(51.95, .51), (48.76, .61), (82.77, .37), (83.42, .26)],
    ("cifar10", "linf", "AT+L2"): [(51.60, .41), (47.37, .52), (81.05, .44), (81.97, .50)],
    ("cifar10", "linf", "AT+CUTOUT"): [(52.78, .14), (50.37, .41), (80.99, .19), (83.46, .33)],
    ("cifar10", "linf", "AT+MIXUP"): [(52.87, .47), (49.76, .81), (78.76, .61), (78.50, 1.21)],
    ("cifar10", "l2", "AT+L1"): [(67.99, .27), (63.75, .40), (88.04, .19), (88.49, .27)],
    ("cifar10", "l2", "AT+L2"): [(67.78, .33), (63.62, .46), (88.57, .14), (87.75, .23)],
    ("cifar10", "l2", "AT+CUTOUT"): [(69.38, .27), (67.68, .30), (88.36, .31), (88.01, .26)],
    ("cifar10", "l2", "AT+MIXUP"): [(70.11, .50), (68.20, .46), (87.29, .71), (86.91, .94)],
}
COLUMNS = ("robust_best", "robust_last", "natural_best", "natural_last")


# keys that do not make two runs different experiments
NOT_GROUPED = ("seed", "device", "profile", "training_semantics", "threads")


def method_label(cfg: dict) -> str:
    """AT, AT-AWP, TRADES-AWP, AT+L2, AT (cosine), and the controls AT-RWP (random direction),
    AT-AWP-global, AT+EMA, AT-AWP+SWA, ... from a run's config (keys it lacks: their defaults)."""
    name = cfg["method"].upper()
    if cfg.get("regularizer", "none") != "none":
        name += "+" + cfg["regularizer"].upper()
    if cfg.get("awp_gamma", 0) > 0:
        name += "-RWP" if cfg.get("awp_direction", "adversarial") == "random" else "-AWP"
        name += "-global" if cfg.get("awp_scope", "layer") == "global" else ""
    if cfg.get("weight_average", "none") != "none":
        name += "+" + cfg["weight_average"].upper()
    if cfg.get("label_noise", 0) > 0:
        name += f" ({cfg['label_noise']:.0%} noisy labels)"
    if cfg.get("schedule", "piecewise") != "piecewise":
        name += f" ({cfg['schedule']})"
    return name


def run_summary(folder: Path) -> dict | None:
    """Best-by-validation and last test accuracies (%) of one finished run, or None."""
    run = RunDir(folder)
    cfg, rows = run.saved_config(), run.rows()
    if cfg is None or not rows:
        return None
    if not any("val_robust" in r for r in rows) or rows[-1]["epoch"] < cfg["epochs"]:
        return None  # unfinished
    # the full-strength final evaluation when the run made one (monitor.final_evaluation), else the monitor's
    s = best_last(rows)
    return {"dataset": cfg["dataset"], "norm": cfg["norm"], "method": method_label(cfg), "seed": cfg["seed"],
            "gamma": cfg.get("awp_gamma", 0), "model": cfg["model"], "epochs": cfg["epochs"], "eps": cfg["eps"],
            "robust_best": 100 * s["best_test_robust"], "robust_last": 100 * s["last_test_robust"],
            "natural_best": 100 * s["best_test_natural"], "natural_last": 100 * s["last_test_natural"],
            "best_epoch": s["best_epoch"], "run": folder.name, "gap_last": 100 * s["last_gap"],
            "attack": attacks_of(rows, SimpleNamespace(eval_attack_steps=cfg.get("eval_attack_steps", "?")))[
                "headline"],
            "test_images": test_images(cfg, has_final(rows)),
            "experiment": json.dumps({k: v for k, v in sorted(cfg.items()) if k not in NOT_GROUPED})}


def test_images(cfg: dict, final: bool) -> int | None:
    """How many test images a run's headline numbers were measured on: the first
    ``final_test_size`` (the final evaluation) or ``eval_test_size`` (the monitor) of its
    ``test_size``; None for the whole test split."""
    subset = cfg.get("final_test_size" if final else "eval_test_size")
    sizes = [n for n in (subset, cfg.get("test_size")) if n]
    return min(sizes) if sizes else None


def measured_on(rows: list[dict]) -> list[str]:
    """One line per way :func:`aggregate`'s rows were measured, e.g. ``PGD-20 on all test
    images: at-awp0.01, at-piecewise``: the attack and the number of test images behind each
    experiment's columns, which differ between experiments."""
    groups: dict[tuple, list[str]] = {}
    for r in rows:
        groups.setdefault((r["attack"], r["test_images"] or 0), []).append(experiment_name(r["runs"][0]))
    order = sorted(groups.items(), key=lambda kv: (kv[0][1] != 0, -kv[0][1], kv[0][0]))  # all, then most
    return [f"{attack} on {f'the first {n:,}' if n else 'all'} test images: {', '.join(sorted(names))}"
            for (attack, n), names in order]


def collect(runs_root: Path, names=None, skip=()) -> list[dict]:
    """Summaries of every finished run under ``runs_root`` (one level of run folders), or of
    ``names`` only; the runs named in ``skip`` (e.g. :func:`runlist.expected_stuck`, runs that
    demonstrate a collapse, not an experiment) are left out."""
    root = Path(runs_root)
    if not root.exists():
        return []
    folders = sorted(root.iterdir()) if names is None else [root / n for n in names]
    return [s for f in folders if f.is_dir() and f.name not in skip and (s := run_summary(f)) is not None]


def aggregate(summaries: list[dict]) -> list[dict]:
    """Group runs whose configs differ only in their seed: mean and std of each column, and the seeds.

    Two folders holding the same config and seed (a copy) count once.
    """
    groups: dict[str, dict[int, dict]] = {}
    for s in summaries:
        groups.setdefault(s["experiment"], {}).setdefault(s["seed"], s)
    out = []
    for by_seed in groups.values():
        runs = [by_seed[k] for k in sorted(by_seed)]
        row = {k: runs[0][k] for k in ("dataset", "norm", "method", "gamma", "model", "epochs", "eps",
                                       "attack", "test_images")}
        row["seeds"], row["runs"] = [r["seed"] for r in runs], [r["run"] for r in runs]
        for c in COLUMNS + ("gap_last",):
            vals = [r[c] for r in runs]
            row[c] = (statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else float("nan"))
        out.append(row)
    return out


def fmt(ms: tuple[float, float]) -> str:
    m, s = ms
    return f"{m:.2f} ± {s:.2f}" if s == s else f"{m:.2f}"


# A run's headline keys (awp_lib.book.best_last) in the order of the paper's columns, and their names.
HEADLINE = ("best_test_robust", "last_test_robust", "best_test_natural", "last_test_natural")
ROW_NAMES = {"best_test_robust": "robust, best", "last_test_robust": "robust, last",
             "best_test_natural": "natural, best", "last_test_natural": "natural, last",
             "drop": "drop (best - last)"}


CLAIM_CHAPTERS = {"ch2": "2. Robust overfitting", "ch3": "3. The weight loss landscape",
                  "ch4": "4. AWP"}


def chapter_claims(profile: str) -> list[dict]:
    """Every claim the chapters checked at ``profile`` (``claims`` in ``results/<profile>/<chapter>.json``),
    in book order, each with its chapter; chapters not built yet are left out."""
    out = []
    for chapter, title in CLAIM_CHAPTERS.items():
        for c in (load_results(profile, chapter) or {}).get("claims", []):
            out.append({"chapter": title, **c})
    return out


def paper_numbers(dataset: str, norm: str, method: str, keys=HEADLINE) -> list[str]:
    """The paper's mean ± std (%) for each headline key of ``keys`` (``drop``: the difference of
    its means); ``—`` where the paper has no row for the experiment or does not report the key."""
    row = PAPER.get((dataset, norm, method))
    out = []
    for k in keys:
        if row is not None and k in HEADLINE:
            out.append(fmt(row[HEADLINE.index(k)]))
        elif row is not None and k == "drop":
            out.append(f"{row[0][0] - row[1][0]:.2f}")
        else:
            out.append("—")
    return out


def beside_paper(cfg: dict, summary: dict) -> dict:
    """One run's headline numbers (%, from :func:`awp_lib.book.best_last`) beside the paper's for
    its dataset, threat model and method: ``{row name: {"ours ...": ..., "paper (%)": ...}}``."""
    paper = paper_numbers(cfg["dataset"], cfg["norm"], method_label(cfg))
    return {ROW_NAMES[k]: {"ours (this run, %)": round(100 * summary[k], 2), "paper (%)": p}
            for k, p in zip(HEADLINE, paper)}


def summary_table(summary: dict) -> dict:
    """A run's :func:`awp_lib.book.best_last` numbers under readable names, in their units:
    epochs as counts, robust losses as they are (3 decimals), accuracies, gaps, drops and the
    loss rise in per cent (2 decimals). The ``max`` and ``min`` entries are the monitor's."""
    out = {}
    for k, v in summary.items():
        name = k.replace("_", " ")
        scale = scale_of(k)[0]  # the claims' rule: losses as they are, the rest times 100
        if "epoch" in k:
            out[name] = int(v)
        elif scale == 1:
            out[name] = round(float(v), 3)
        else:
            out[f"{name} (%)"] = round(scale * float(v), 2)
    return out


def grid_table(lines: list[dict]):
    """:func:`paper_grid`'s lines as a table for a page: one row per "dataset, norm, method", each
    number under two header rows, the column's name over ``ours`` and ``paper``."""
    import pandas as pd  # CLI start-up time

    frame = pd.DataFrame(lines)
    frame.index = [f"{r['dataset']}, {r['norm']}, {r['method']}" for r in lines]
    frame = frame.drop(columns=["dataset", "norm", "method"])
    frame.columns = pd.MultiIndex.from_tuples([tuple(reversed(c.split(": ", 1))) for c in frame.columns])
    return frame


def experiment_name(run: str) -> str:
    """A run folder's name without its seed: ``at-awp0.01-s3`` -> ``at-awp0.01``."""
    return re.sub(r"-s\d+$", "", run)


def runs_table(rows: list[dict]) -> list[dict]:
    """:func:`aggregate`'s rows as a table of our runs, one line per experiment: its name (the
    run folder's without the seed), dataset, norm, method, γ (``—`` without AWP), model, number
    of seeds, the four columns and the last gap as mean ± std."""
    named = [(experiment_name(r["runs"][0]), r) for r in rows]
    named.sort(key=lambda nr: (nr[1]["dataset"], nr[1]["norm"], nr[1]["method"], nr[1]["gamma"] or 0, nr[0]))
    return [{"experiment": name, "dataset": r["dataset"], "norm": r["norm"],
             "method": r["method"], "γ": r["gamma"] or "—", "model": r["model"], "seeds": len(r["seeds"]),
             **{c.replace("_", " "): fmt(r[c]) for c in COLUMNS}, "gap (last)": fmt(r["gap_last"])}
            for name, r in named]


def paper_grid(rows: list[dict], methods=("AT", "AT-AWP"), gamma: float | None = None) -> list[dict]:
    """The paper's grid (dataset × threat model × ``methods``) with ours beside the paper's: per
    cell the experiment at the table's AWP budget ``gamma`` if there is one, else the one with the
    most seeds; ``absent`` where we have none, ``—`` where the paper has none; cells that neither
    has are left out."""
    def rank(r):  # the table's γ first, then the most seeds; the highest rank is kept, so it wins
        return (gamma is not None and bool(r["gamma"]) and abs(r["gamma"] - gamma) < 1e-12,
                len(r["seeds"]))

    have = {}
    for r in sorted(rows, key=rank):
        if r["method"] in methods:
            have[(r["dataset"], r["norm"], r["method"])] = r
    out = []
    for d in sorted({d for d, _, _ in PAPER} | {r["dataset"] for r in rows}):
        for n in ("linf", "l2"):
            for m in methods:
                r, p = have.get((d, n, m)), PAPER.get((d, n, m))
                if r is None and p is None:
                    continue
                line = {"dataset": d, "norm": n, "method": m,
                        "ours: γ, seeds": f"{r['gamma'] or 0:g}, {len(r['seeds'])}" if r else ""}
                for j, c in enumerate(COLUMNS):
                    line[f"ours: {c.replace('_', ' ')}"] = fmt(r[c]) if r else "absent"
                    line[f"paper: {c.replace('_', ' ')}"] = fmt(p[j]) if p else "—"
                out.append(line)
    return out
