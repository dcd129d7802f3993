"""Helpers the chapters share: profiles, run folders, results files, sliders, source listings.

Every chapter starts with a ``parameters`` cell (papermill) holding ``profile``; the rest of
its knobs come from :func:`chapter_config`, so one notebook runs at ``smoke``, ``cpu`` and
``paper`` scale.
"""
from __future__ import annotations

import inspect
import io
import json
import os
import platform
import time
from pathlib import Path

from .config import PROFILES, make_config
from .data import project_root  # noqa: F401 (chapters call book.project_root)
from .validate import check_choice


def check_profile(profile: str) -> str:
    check_choice("profile", profile, PROFILES)
    return profile


def settings(chapter: str, profile: str) -> dict:
    """The measurement settings of ``chapter`` at ``profile`` from ``configs/chapters.yaml``."""
    import yaml
    path = project_root() / "configs" / "chapters.yaml"
    table = yaml.safe_load(path.read_text())
    check_choice(f"chapter (in {path.name})", chapter, tuple(table))
    check_choice(f"profile of {chapter} (in {path.name})", profile, tuple(table[chapter]))
    return table[chapter][profile]


def run_dir(profile: str, name: str) -> Path:
    return project_root() / "runs" / profile / name


def run_state(profile: str, name: str, overrides: dict | None = None) -> str:
    """``done`` (trained to its last epoch, final evaluation made), ``partial`` (interrupted, or
    its final evaluation is missing or asked for with other settings: it resumes), ``stuck``
    (stopped at chance, :func:`awp_lib.train.stuck_at_chance`: it fails again at once), ``stale``
    (trained under older training semantics: it is set aside and trained again) or ``new``.
    With ``overrides``, a finished run counts as done only for that config."""
    from .config import config_diff, load_saved
    from .data import NUM_CLASSES
    from .io import load_torch
    from .semantics import is_stale
    from .train import final_done, stuck_at_chance
    d = run_dir(profile, name)
    last = d / "checkpoints" / "last.pt"
    if is_stale(d):
        return "stale"
    if not last.exists():
        return "new"
    saved = json.loads((d / "config.json").read_text()) if (d / "config.json").exists() else {}
    ck = load_torch(last)
    if ck["epoch"] < saved.get("epochs", float("inf")):
        cfg = load_saved(d / "config.json")
        stuck = stuck_at_chance(cfg, json.loads(ck["metrics"]), NUM_CLASSES[cfg.dataset])
        return "partial" if stuck is None else "stuck"
    if overrides is not None:
        cfg = make_config(profile, **overrides)
        if config_diff(saved, cfg) or not final_done(cfg, json.loads(ck["metrics"])):
            return "partial"
    return "done"


def train_run(name: str, profile: str, _progress: str | None = None, **overrides) -> list[dict]:
    """Train (or resume, or just load) the run ``runs/<profile>/<name>``; returns its metrics.

    A finished run with the same config is read back, not recomputed, so chapters share runs.
    With ``AWP_BOOK_RUNS=read`` (the book build, after ``python -m awp_lib book-runs``) a run
    must be one of :func:`awp_lib.bookruns.book_runs` and finished: nothing trains inside a page.
    """
    from .train import train
    cfg = make_config(profile, **overrides)
    if os.environ.get("AWP_BOOK_RUNS") == "read":
        from .bookruns import book_runs
        listed = book_runs(profile)
        if name not in listed or make_config(profile, **listed[name]).to_dict() != cfg.to_dict():
            why = "is not in" if name not in listed else "has another config than in"
            raise RuntimeError(f"run {name!r} ({overrides}) {why} the book's run list "
                               "(awp_lib/bookruns.py, book_runs): add it there, so that "
                               "`python -m awp_lib book-runs` trains it before the pages execute")
        state = run_state(profile, name, overrides)
        if state == "stuck":
            raise RuntimeError(f"run {name!r} is stuck at chance (python -m awp_lib book-runs --profile "
                               f"{profile} --only {name} says why): no page reads its numbers")
        if state != "done":
            raise RuntimeError(f"run {name!r} is not finished: run `python -m awp_lib book-runs "
                               f"--profile {profile}` first (make book does)")
    # a page reading a finished run prints nothing; a run that trains prints one line per epoch
    quiet = profile == "smoke" or os.environ.get("AWP_BOOK_RUNS") == "read"
    progress = _progress or ("none" if quiet else "line")
    return train(cfg, run_dir(profile, name), progress=progress)


def stuck_run(name: str, profile: str, **overrides) -> tuple[list[dict], str | None]:
    """A run that may stop stuck at chance (chapter 4's demonstration of the collapse): its
    metrics and the reason it stopped (None if it trained to its end). With ``AWP_BOOK_RUNS=read``
    it must be listed and stopped or finished."""
    from .config import load_saved
    from .data import NUM_CLASSES
    from .train import TrainingStuck, stuck_at_chance
    folder = run_dir(profile, name)
    if os.environ.get("AWP_BOOK_RUNS") == "read":
        if run_state(profile, name, overrides) not in ("stuck", "done"):
            raise RuntimeError(f"run {name!r} is not trained: run `python -m awp_lib book-runs "
                               f"--profile {profile}` first (make book does)")
    else:
        try:
            return train_run(name, profile, **overrides), None
        except TrainingStuck:
            pass
    rows = json.loads((folder / "metrics.json").read_text())
    cfg = load_saved(folder / "config.json")
    why = stuck_at_chance(cfg, rows, NUM_CLASSES[cfg.dataset])
    return rows, (None if why is None else f"stuck at chance at epoch {rows[-1]['epoch']}: {why}")


def load_run_model(name: str, profile: str, which: str = "last"):
    """The model of run ``runs/<profile>/<name>`` at checkpoint ``which`` (``last``, ``best`` or ``epochN``)."""
    from .landscape import load_run_model as load
    return load(run_dir(profile, name) / "checkpoints" / f"{which}.pt")[0]


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


def run_record(profile: str, name: str) -> dict:
    """What a finished run was trained and measured with: precision (``amp``), intra-op threads,
    training semantics, and the number of test images of its final evaluation."""
    from .config import load_saved
    from .train import final_test_images
    path = run_dir(profile, name) / "config.json"
    saved, cfg = json.loads(path.read_text()), load_saved(path)
    return {"precision": "fp32" if cfg.amp == "none" else cfg.amp, "threads_per_run": saved.get("threads"),
            "training_semantics": saved.get("training_semantics", 1),
            "test_images": final_test_images(cfg)}


def decay_epochs(rows: list[dict]) -> list[int]:
    """Epochs after which the learning rate dropped by 5x or more (the piecewise decays)."""
    return [a["epoch"] for a, b in zip(rows, rows[1:]) if b["lr"] < 0.2 * a["lr"]]


def at_epoch(rows: list[dict], epoch: int, key: str) -> float:
    """The monitor's ``key`` at the last evaluated epoch <= ``epoch`` (NaN if none)."""
    ev = [r for r in rows if key in r and r["epoch"] <= epoch]
    return ev[-1][key] if ev else float("nan")


def gap_at(rows: list[dict], epoch: int) -> float:
    """The robust generalization gap at the last evaluated epoch <= ``epoch``."""
    return at_epoch(rows, epoch, "gap")


# One colour per method across the book, no two alike: every comparison of methods uses these,
# and plot_curves draws a run in its method's colour (the line style tells the split).
COLORS = {"Standard": "k", "AT": "C0", "AT-AWP": "C3", "AT-RWP": "C1", "AT-RWP x10": "C5",
          "AT-AWP global": "C4", "AT+EMA": "C2", "AT+SWA": "C8", "AT+L2": "C6", "AT+MIXUP": "C9",
          "AT+L1": "C7", "AT+CUTOUT": "goldenrod"}


def color_of(label: str) -> str:
    """The colour of a method: its :data:`COLORS` entry (labels as :func:`report.method_label` writes
    them; a trailing " (...)" is ignored), else its family's: a method with AWP is drawn like
    AT-AWP (TRADES-AWP, MART-AWP ...), one without like AT."""
    key = label.split(" (")[0].replace("-AWP-global", "-AWP global")
    if key in COLORS:
        return COLORS[key]
    return COLORS["AT-AWP"] if "-AWP" in key else COLORS["AT"]


def attacks_of(rows: list[dict], cfg=None) -> dict:
    """Which attack produced a run's numbers: ``monitor`` (the per-epoch curves and the choice of
    the best epoch) and ``headline`` (:func:`best_last`), e.g. ``PGD-5`` and ``PGD-20``."""
    _, _, last, final = _selected(rows)
    monitor = f"PGD-{cfg.eval_attack_steps}" if cfg is not None else "the per-epoch monitor"
    return {"monitor": monitor, "headline": last["final_attack"] if final else monitor}


def _selected(rows: list[dict]):
    """(evaluated rows, best-by-validation row, last row, whether both have final numbers)."""
    ev = [r for r in rows if "val_robust" in r]
    best, last = max(ev, key=lambda r: r["val_robust"]), ev[-1]
    return ev, best, last, "final_test_robust" in best and "final_test_robust" in last


def save_results(profile: str, chapter: str, results: dict) -> Path:
    """Write ``results/<profile>/<chapter>.json`` (atomically), with the profile and a timestamp."""
    from .io import save_text
    path = project_root() / "results" / profile / f"{chapter}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"profile": profile, "chapter": chapter, "written": time.strftime("%Y-%m-%d %H:%M:%S"),
               "machine": platform.machine(), **results}
    save_text(json.dumps(payload, indent=1, default=float), path)
    return path


def load_results(profile: str, chapter: str) -> dict | None:
    path = project_root() / "results" / profile / f"{chapter}.json"
    return json.loads(path.read_text()) if path.exists() else None


def show_source(obj) -> None:
    """Display the real source of an ``awp_lib`` object (never a copy that could drift)."""
    from IPython.display import Code, display
    display(Code(inspect.getsource(obj), language="python"))


def fig_png(fig, dpi: int = 90) -> bytes:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def figure_slider(figures: dict, description: str, readout=str):
    """A slider over precomputed figures that also works in the static HTML.

    ``figures`` maps each slider value to a matplotlib figure. The slider drives a
    ``widgets.Stack`` through ``jsdlink``, which runs in the browser without a kernel.
    """
    import ipywidgets as widgets
    labels = [readout(k) for k in figures]
    # the label is an HTML widget, not the slider's description: html-manager 1.0 calls MathJax 2's
    # API on descriptions, which fails on pages that load MathJax 3
    slider = widgets.SelectionSlider(options=labels, value=labels[0], description="",
                                     continuous_update=True, layout=widgets.Layout(width="420px"))
    slider.add_class("awp-slider")
    stack = widgets.Stack([widgets.Image(value=fig_png(f), format="png") for f in figures.values()],
                          selected_index=0)
    stack.add_class("awp-stack")
    widgets.jsdlink((slider, "index"), (stack, "selected_index"))
    return widgets.VBox([widgets.HBox([widgets.HTML(f"<b>{description}</b>&nbsp;"), slider]), stack])


def mean_std(values) -> tuple[float, float]:
    import statistics
    vals = list(values)
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def late_stage_start(rows: list[dict], threshold: float = 0.10):
    """First evaluated epoch whose robust generalization gap exceeds ``threshold`` (Appendix C), or None."""
    return next((r["epoch"] for r in rows if "gap" in r and r["gap"] > threshold), None)


# The line style of each split in plot_curves (the colour is the method's).
SPLIT_STYLES = {"train_robust": ("train robust (at w)", "--"), "val_robust": ("validation robust", ":"),
                "test_robust": ("test robust", "-")}


def plot_curves(rows: list[dict], ax=None, title: str = "", legend: bool = True, loss_ax=None,
                color: str = COLORS["AT"]):
    """Learning curves of one run in its method's ``color`` (:func:`color_of`): train robust (at w)
    dashed, validation robust dotted, test robust solid, test natural grey; the learning-rate
    decays, the validation-selected epoch and the late stage (gap > 10%) shaded; with
    ``loss_ax``, the robust train and test *loss* per evaluated epoch there."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots(figsize=(6, 3.6))[1]
    ev = [r for r in rows if "val_robust" in r]
    ep = [r["epoch"] for r in ev]
    for key, (label, ls) in SPLIT_STYLES.items():
        ax.plot(ep, [100 * r[key] for r in ev], ls, color=color, label=label,
                lw=1.8 if key == "test_robust" else 1.2)
    ax.plot(ep, [100 * r["test_natural"] for r in ev], "-.", color="0.55", lw=1, label="test natural")
    finals = [r for r in ev if "final_test_robust" in r]
    if finals:  # the full-strength evaluation of the best and last checkpoints
        ax.plot([r["epoch"] for r in finals], [100 * r["final_test_robust"] for r in finals], "*", color=color,
                ms=9, mec="k", mew=0.5, label=f"test robust, {finals[0]['final_attack']} (all test images)")
    late = late_stage_start(ev)
    best = best_last(rows)["best_epoch"]
    for a in (ax, loss_ax) if loss_ax is not None else (ax,):
        if late is not None:
            a.axvspan(late, ep[-1], color="0.5", alpha=0.1, lw=0)
        a.axvline(best, color="0.3", ls=":", lw=1)
        for e in decay_epochs(rows):
            a.axvline(e, color="k", lw=0.5, alpha=0.4)
        a.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)" + (" (lines: monitor)" if finals else ""))
    ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(fontsize=7, loc="lower right")
    if loss_ax is not None and "test_robust_loss" in ev[-1]:
        for part in ("train", "test"):
            loss_ax.plot(ep, [r[f"{part}_robust_loss"] for r in ev], SPLIT_STYLES[f"{part}_robust"][1], color=color,
                         label=f"robust loss, {part}")
        loss_ax.set_ylabel("robust cross-entropy")
        if legend:
            loss_ax.legend(fontsize=7)
    return ax


def monitor_agreement(profile: str, name: str, steps: int = 20) -> dict:
    """Does the cheap per-epoch monitor pick the epoch that PGD-``steps`` would pick?

    Every saved checkpoint (``epochN.pt``) of run ``name`` that the monitor evaluated is attacked
    again with PGD-``steps`` on the validation split; returns the per-epoch pairs, the epoch each
    one selects among them, and their rank correlation (Spearman)."""
    import torch

    from . import data
    from .config import load_saved
    from .landscape import load_run_model
    from .train import resolve_device, robust_accuracy
    d = run_dir(profile, name)
    cfg = load_saved(d / "config.json")
    rows = {r["epoch"]: r for r in json.loads((d / "metrics.json").read_text()) if "val_robust" in r}
    saved = sorted(int(p.stem[5:]) for p in (d / "checkpoints").glob("epoch*.pt"))
    epochs = [e for e in saved if e in rows]
    if len(epochs) < 2:
        raise ValueError(f"{name}: {len(epochs)} saved checkpoint(s) the monitor evaluated; need 2 or more")
    device = resolve_device(cfg.device)
    splits = data.get_splits(cfg.dataset, cfg.train_size, cfg.val_size, cfg.test_size, cfg.seed)
    loader = data.Loader(*splits.val, 512, device=device)
    strong = {}
    for e in epochs:
        model = load_run_model(d / "checkpoints" / f"epoch{e}.pt")[0].to(device)
        torch.manual_seed(cfg.seed)
        strong[e] = robust_accuracy(model, loader, cfg, steps)[1]
    weak = {e: rows[e]["val_robust"] for e in epochs}

    def ranks(v):  # average ranks: tied accuracies share their rank
        return {e: sum(x < v[e] for x in v.values()) + (sum(x == v[e] for x in v.values()) - 1) / 2 for e in v}
    rw, rs = ranks(weak), ranks(strong)
    n = len(epochs)
    mw, ms = sum(rw.values()) / n, sum(rs.values()) / n   # Spearman: Pearson of the ranks
    cov = sum((rw[e] - mw) * (rs[e] - ms) for e in epochs)
    var = (sum((rw[e] - mw) ** 2 for e in epochs) * sum((rs[e] - ms) ** 2 for e in epochs)) ** 0.5
    spearman = cov / var if var > 0 else float("nan")
    pick_w, pick_s = max(weak, key=weak.get), max(strong, key=strong.get)
    return {"epochs": epochs, "monitor": weak, "strong": strong, "monitor_attack": f"PGD-{cfg.eval_attack_steps}",
            "strong_attack": f"PGD-{steps}", "monitor_pick": pick_w, "strong_pick": pick_s,
            "same_pick": pick_w == pick_s, "spearman": spearman,
            "strong_at_monitor_pick": strong[pick_w], "strong_best": strong[pick_s]}
