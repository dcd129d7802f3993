"""Choosing the ``cpu`` miniature: AT under the levers of robust overfitting, read on validation.

Robust overfitting grows with capacity relative to the data, with the epochs spent after the
first learning-rate decay, with a smaller learning rate after it and with less weight decay
(Rice et al. 2020). Each setting of :data:`SETTINGS` changes some of
these on the ``cpu`` preset and trains AT only, over several seeds; :func:`summary` reads each
run's *validation* curve (the per-epoch monitor: PGD on the held-out split) and its training
robust accuracy: best → last, the fall after the best epoch, how far train robust accuracy
climbs after the decay, and the cost of a run. No AWP run and no test number takes part.

``python -m awp_lib levers --seeds 3`` trains the study (in parallel, as ``book-runs``) and
writes ``configs/levers-cpu.json``, which chapter 2 shows.
"""
from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

from ..data import project_root
from ..io import save_text
from ..validate import check_choice
from .build import train_runs
from .results import strict
from .store import Run
from .epochs import after_decay, at_epoch
from .summaries import mean_std

# name: (overrides of the cpu preset, what changes)
SETTINGS = {
    "w8": (dict(width=8, train_size=2000, decays=[0.5, 0.75]), "width 8, 2,000 images, decays 50/75 of 100"),
    "w16": (dict(width=16, train_size=2000, decays=[0.5, 0.75]), "width 16, 2,000 images, decays 50/75 of 100"),
    "w16-early": (dict(width=16, train_size=2000, epochs=80, decays=[0.25, 0.75]),
                  "width 16, 2,000 images, decays 20/60 of 80"),
    "w16-early-wd0": (dict(width=16, train_size=2000, epochs=80, decays=[0.25, 0.75], weight_decay=0.0),
                      "as w16-early, weight decay 0"),
    "w16-n1000": (dict(width=16, train_size=1000, decays=[0.2, 0.8]),
                  "width 16, 1,000 images, decays 20/80 of 100"),
    "w16-n1000-wd0": (dict(width=16, train_size=1000, decays=[0.2, 0.8], weight_decay=0.0),
                      "as w16-n1000, weight decay 0"),
    "w32-early": (dict(width=32, train_size=2000, epochs=80, decays=[0.25, 0.75]), "as w16-early, width 32"),
}
# The study reads the monitor only: no final evaluation of test images.
STUDY = dict(method="at", final_attack_steps=0)


def lever_runs(seeds: int = 3, settings: list[str] | None = None) -> dict[str, Run]:
    """The study's runs at ``cpu`` by name: ``lever-<setting>-s<seed>``."""
    names = settings or list(SETTINGS)
    for n in names:
        check_choice("lever setting", n, tuple(SETTINGS))
    return {f"lever-{n}-s{s}": Run("cpu", f"lever-{n}-s{s}", dict(SETTINGS[n][0], seed=s, **STUDY))
            for n in names for s in range(seeds)}


def run_levers(rows: list[dict]) -> dict:
    """One run's numbers on validation: best epoch, best and last validation robust accuracy, the
    drop, and train robust accuracy at the first decay and at the end (the monitor's, at w)."""
    ev = [r for r in rows if "val_robust" in r]
    best = max(ev, key=lambda r: r["val_robust"])
    decay = after_decay(rows)
    return {"best_epoch": best["epoch"], "best_val_robust": best["val_robust"], "last_val_robust": ev[-1]["val_robust"],
            "val_drop": best["val_robust"] - ev[-1]["val_robust"],
            "train_robust_at_decay": at_epoch(rows, decay["decay_epoch"], "train_robust"),
            "train_robust_end": ev[-1]["train_robust"], "train_robust_rise": decay["train_rise"],
            "minutes": sum(r["time_total"] for r in rows) / 60}


def summary(profile: str = "cpu", seeds: int = 3, settings: list[str] | None = None) -> list[dict]:
    """Per setting: mean ± standard error over the finished seeds of :func:`run_levers`."""
    out = []
    for name in settings or list(SETTINGS):
        per_seed = []
        for s in range(seeds):
            run = Run(profile, f"lever-{name}-s{s}").folder
            if run.finished():  # finished runs only
                per_seed.append(run_levers(run.rows()))
        if not per_seed:
            continue
        row = {"setting": name, "what": SETTINGS[name][1], "overrides": SETTINGS[name][0], "seeds": len(per_seed),
               "per_seed": per_seed}
        for k in per_seed[0]:
            mean, sd = mean_std([p[k] for p in per_seed])
            row[k], row[f"{k}_se"] = mean, sd / math.sqrt(len(per_seed)) if len(per_seed) > 1 else float("nan")
        row["goal_met"] = bool(row["val_drop"] >= 0.02 and row["val_drop"] > 3 * row["val_drop_se"]
                               and row["train_robust_rise"] >= 0.10)
        out.append(row)
    return out


def recorded(path=None) -> dict | None:
    """The study as ``python -m awp_lib levers`` last wrote it (``configs/levers-cpu.json``), or None."""
    path = Path(path) if path else project_root() / "configs" / "levers-cpu.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(record: dict) -> list[dict]:
    """One row per setting of a recorded study, in points (mean ± standard error over seeds)."""
    def pm(row, k):
        return f"{100 * row[k]:.1f} ± {100 * row[k + '_se']:.1f}" if row["seeds"] > 1 else f"{100 * row[k]:.1f}"
    return [{"setting": r["setting"], "what changes": r["what"], "n": r["seeds"],
             "val. best": pm(r, "best_val_robust"), "val. last": pm(r, "last_val_robust"),
             "val. drop": pm(r, "val_drop"), "train robust rise": pm(r, "train_robust_rise"),
             "min": f"{r['minutes']:.0f}", "goal": "met" if r["goal_met"] else "missed"}
            for r in record["settings"]]


def chosen(record: dict, cfg) -> list[str]:
    """The settings of a recorded study that a config (the ``cpu`` preset) matches."""
    return [r["setting"] for r in record["settings"] if all(getattr(cfg, k) == v for k, v in r["overrides"].items())]


def register_cli(sub) -> None:
    p = sub.add_parser("levers", help="train AT under the levers of robust overfitting (the cpu miniature's "
                                      "choice, on validation) and write the summary")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--settings", default="", help=f"comma list of {', '.join(SETTINGS)} (default: all)")
    p.add_argument("--jobs", type=int, default=None, help="runs at once (default: the cores, capped by memory)")
    p.add_argument("--out", default=None, help="summary JSON (default: configs/levers-cpu.json)")
    p.add_argument("--summary-only", action="store_true", help="train nothing; summarise finished runs")
    p.add_argument("--progress", default="auto", choices=["auto", "bar", "line"])
    p.set_defaults(fn=_cmd)


def _cmd(args) -> None:

    settings = [s.strip() for s in args.settings.split(",") if s.strip()] or None
    if not args.summary_only:
        train_runs(lever_runs(args.seeds, settings), args.progress, args.jobs, "lever study (cpu)")
    rows = summary("cpu", args.seeds, settings)
    for r in rows:
        print(f"{r['setting']:>14}: validation {100 * r['best_val_robust']:.1f} -> {100 * r['last_val_robust']:.1f}, "
              f"drop {100 * r['val_drop']:.2f} ± {100 * r['val_drop_se']:.2f}, train robust +"
              f"{100 * r['train_robust_rise']:.1f}, {r['minutes']:.1f} min per run ({r['seeds']} seeds)"
              f"{', goal met' if r['goal_met'] else ''}")
    out = Path(args.out) if args.out else project_root() / "configs" / "levers-cpu.json"
    record = {"measured": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {platform.processor() or ''}"
              .strip(", "), "threads_per_run": 1, "criterion": "validation only (AT runs; no test image, no AWP)",
              "goal": "val_drop >= 2 points and > 3 SE; train robust rises >= 10 points after the first decay",
              "jobs": args.jobs, "note": "minutes per run as measured with `jobs` runs sharing the cores",
              "settings": rows}
    save_text(json.dumps(strict(record), indent=1, allow_nan=False), out)
    print(f"summary: {out}")
