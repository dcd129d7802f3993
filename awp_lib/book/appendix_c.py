"""Appendix C at the book's scale: in every setting the book trains, does the weight loss
landscape sharpen where the robust generalization gap opens?

Appendix C makes one claim across schedules, architectures, datasets and the L2 threat model
(Figures 7-10): *once the robust generalization gap increases, the landscape becomes sharper*.
:func:`measure` reads each setting's finished AT run (:func:`awp_lib.book.runlist.ch3_settings`;
nothing trains), takes chapter 3's checkpoint before the gap opens and the last one
(:func:`awp_lib.book.epochs.landscape_checkpoints`), and measures at both the robust gap, the
average-case flatness (:func:`awp_lib.landscape.flatness`, the chapter's settings) and a 1-D
landscape. :func:`verdict` says per setting whether the claim holds, and :func:`rank_test`
whether the gap's rise and the flatness's rise go together across settings.
"""
from __future__ import annotations

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import data, landscape
from .epochs import at_epoch, landscape_checkpoints
from .plots import plot_curves
from .store import Run
from .summaries import correlation

# Below this rise of the gap (pre-split checkpoint to the last, as a fraction: 3 points) a
# setting's gap "did not open", and the claim says nothing about it.
GAP_OPENS = 0.03


def training_data(cfg, n: int | None, device) -> tuple:
    """The first ``n`` training images of a run and the labels it trained on (label noise included)."""
    splits = data.get_splits(cfg.dataset, cfg.train_size, cfg.val_size, cfg.test_size, cfg.seed)
    if cfg.label_noise > 0:
        splits = data.flip_labels(splits, cfg.label_noise, cfg.seed)
    x, y = splits.train
    n = min(n or len(y), len(y))
    return x[:n].to(device), y[:n].to(device)


def first_direction(curve: dict) -> dict:
    """A :func:`awp_lib.landscape.landscape_1d` result cut to its first direction: what the same
    call with ``k=1`` returns (directions and attacks are seeded per index)."""
    if curve["k"] == 1:
        return curve
    return {**curve, "loss": curve["loss"][:1], "stderr": curve["stderr"][:1], "mean": curve["loss"][0],
            "spread": [0.0] * len(curve["alphas"]), "k": 1}


def measure(settings: dict[str, Run], flat_args: dict, alphas, n: int | None, steps: int | None, seed: int,
            device, known: dict | None = None) -> tuple[dict[str, dict], list[str]]:
    """Per setting (``{label: Run}``), at the checkpoint before the gap opens (``pre``) and at the
    last: the monitor's robust gap, the flatness (``flat_args`` as chapter 3's, on ``n`` training
    images, PGD-``steps`` at the run's own threat model; None: its training attack) and a 1-D
    landscape along one direction over ``alphas``. ``known``: ``{(run name, epoch): {"flatness":
    ..., "curve": ...}}`` the page has already measured with the same settings, reused.
    Each measurement also holds the rises and its :func:`verdict`. Returns the measurements and
    the labels whose run is not finished (missing)."""
    known, out, missing = known or {}, {}, []
    for label, run in settings.items():
        rows = run.finished_rows()
        if rows is None:
            missing.append(label)
            continue
        cfg = run.config
        picks = landscape_checkpoints(rows, run.saved_epochs(), cfg.schedule)
        epochs = {"pre": picks["role_epoch"]["pre"], "last": rows[-1]["epoch"]}
        land = dict(eps=cfg.eps, attack_alpha=cfg.alpha, attack_steps=steps or cfg.attack_steps, norm=cfg.norm)
        train_data = None
        m = {"run": run.name, "epochs": epochs, "split": picks["split"], "split_what": picks["split_what"],
             "rows": rows, "gap": {}, "flatness": {}, "worst": {}, "curve": {}}
        for which, e in epochs.items():
            got = known.get((run.name, e), {})
            if "flatness" not in got or "curve" not in got:
                train_data = train_data or training_data(cfg, n, device)
                model = run.model(e).to(device)
            f = got.get("flatness") or landscape.flatness(model, train_data, seed=seed, n=n, **flat_args, **land)
            curve = first_direction(got["curve"]) if "curve" in got else landscape.landscape_1d(
                model, train_data, alphas, k=1, seed=seed, n=n, **land)
            m["gap"][which] = at_epoch(rows, e, "gap")
            m["flatness"][which], m["worst"][which], m["curve"][which] = f["average"], f["worst"], curve
        m["gap_rise"] = m["gap"]["last"] - m["gap"]["pre"]
        m["flatness_rise"] = m["flatness"]["last"] - m["flatness"]["pre"]
        m["verdict"] = verdict(m)
        out[label] = m
    return out, missing


PAPER_NAMES = {"vgg19": "VGG-19", "wrn-34-10": "WRN-34-10", "cifar100": "CIFAR-100", "svhn": "SVHN"}


def describe(label: str, cfg) -> str:
    """What a setting of :func:`awp_lib.book.runlist.ch3_settings` changes, for tables and titles."""
    if label == "preset":
        return f"the preset ({cfg.schedule})"
    if label in ("cosine", "cyclic"):
        return f"{label} schedule" + (f", peak {cfg.cyclic_lr:g}" if label == "cyclic" else "")
    if label == "l2":
        return f"L2, ε = {cfg.eps:.3g}"
    if label.startswith("width"):
        return f"{cfg.model} width {cfg.width}"
    if label == "mlp":
        return f"MLP 2×{64 * cfg.width}"
    if label.startswith("noise"):
        return f"{100 * cfg.label_noise:.0f}% label noise"
    if label.startswith("n") and label[1:].isdigit():
        return f"{cfg.train_size:,} training images"
    return PAPER_NAMES.get(label, label)


def verdict(m: dict, threshold: float = GAP_OPENS) -> str:
    """``holds`` (the gap opened and the last checkpoint is sharper), ``FAILS`` (it opened, the
    landscape did not sharpen) or ``gap did not open`` (its rise is under ``threshold``)."""
    if m["gap_rise"] < threshold:
        return "gap did not open"
    return "holds" if m["flatness_rise"] > 0 else "FAILS"


def rank_test(x, y, samples: int = 20_000, seed: int = 0) -> dict:
    """Spearman's rank correlation of ``x`` and ``y`` and its one-sided permutation p-value (the
    share of orderings of ``y`` whose correlation is at least the observed one): exact over all
    orderings up to 8 points, else ``samples`` random ones. NaN for fewer than 3 points."""
    x, y = list(x), list(y)
    rho = correlation(x, y, "spearman")
    if len(x) < 3 or math.isnan(rho):
        return {"spearman": float(rho), "p_value": float("nan"), "n": len(x), "permutations": 0}
    rx, ry = (pd.Series(v, dtype=float).rank().to_numpy() for v in (x, y))  # average ranks (ties)
    if len(x) <= 8:
        orders = np.array(list(itertools.permutations(range(len(x)))))
    else:
        rng = np.random.default_rng(seed)
        orders = np.array([rng.permutation(len(x)) for _ in range(samples)])
    cx = rx - rx.mean()
    cy = ry[orders] - ry.mean()  # one ordering of y's ranks per row
    rhos = cy @ cx / (np.linalg.norm(cx) * np.linalg.norm(cy, axis=1))  # Pearson of the ranks
    return {"spearman": float(rho), "p_value": float(np.mean(rhos >= rho - 1e-12)), "n": len(x),
            "permutations": len(orders)}


def claims(measured: dict[str, dict], settings: dict[str, Run]) -> dict:
    """The claims of Appendix C on ``measured`` (:func:`measure`): one per setting whose gap opened
    (:func:`verdict`), and across the settings the rank test of the gap's rise against the
    flatness's rise (holds for Spearman > 0 with a one-sided permutation p < 0.05). Returns
    ``claims`` (``(text, holds, numbers)``, as :class:`awp_lib.book.claims.Claims` takes them),
    ``no_claim`` (a line per setting whose gap did not open) and ``rank``."""
    out, none = [], []
    for label, m in measured.items():
        what = describe(label, settings[label].config)
        gap, fl = m["gap"], m["flatness"]
        numbers = (f"gap {100 * gap['pre']:.1f} -> {100 * gap['last']:.1f} points, "
                   f"flatness {fl['pre']:.3f} -> {fl['last']:.3f}")
        v = m["verdict"]
        if v == "gap did not open":
            none.append(f"no claim: {what}: the gap did not open  [{numbers}]")
        else:
            out.append((f"{what}: where the gap opens, the landscape sharpens", v == "holds", numbers))
    rank = rank_test([m["gap_rise"] for m in measured.values()], [m["flatness_rise"] for m in measured.values()])
    out.append(("across the settings, the gap's rise and the flatness's rise go together (Spearman > 0, "
                "one-sided permutation p < 0.05)", rank["spearman"] > 0 and rank["p_value"] < 0.05,
                f"Spearman {rank['spearman']:.2f}, p = {rank['p_value']:.3f} over {rank['n']} settings "
                f"({rank['permutations']} orderings)"))
    return {"claims": out, "no_claim": none, "rank": rank}


def table(measured: dict[str, dict], settings: dict[str, Run]) -> list[dict]:
    """Table 3.1's rows: per setting its epochs, gap (points, 1 decimal) and flatness (3 decimals)
    at the two checkpoints, their rises, and the verdict."""
    return [{"setting": describe(label, settings[label].config),
             "epochs (pre, last)": f"{m['epochs']['pre']}, {m['epochs']['last']}",
             "gap, pre": round(100 * m["gap"]["pre"], 1), "gap, last": round(100 * m["gap"]["last"], 1),
             "gap rise": round(100 * m["gap_rise"], 1), "flatness, pre": round(m["flatness"]["pre"], 3),
             "flatness, last": round(m["flatness"]["last"], 3), "flatness rise": round(m["flatness_rise"], 3),
             "verdict": m["verdict"]} for label, m in measured.items()]


def plot(measured: dict[str, dict], labels: dict[str, str] | None = None, columns: int = 2):
    """The layout of Figures 7-10: per setting, its learning curves with the two checkpoints
    marked (top) and their 1-D landscapes, early blue and late red (below)."""
    names = list(measured)
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(2 * rows, columns, figsize=(4.3 * columns, 5.0 * rows), squeeze=False)
    colour = {"pre": "tab:blue", "last": "tab:red"}
    for i, label in enumerate(names):
        m, top, bottom = measured[label], axes[2 * (i // columns), i % columns], axes[2 * (i // columns) + 1, i % columns]
        plot_curves(m["rows"], ax=top, title=(labels or {}).get(label, label), legend=i == 0)
        for which, e in m["epochs"].items():
            top.axvline(e, color=colour[which], ls="--", lw=1.2)
            landscape.plot_1d(m["curve"][which], ax=bottom, color=colour[which],
                              label=f"epoch {e}, gap {100 * m['gap'][which]:.0f}")
        bottom.legend(fontsize=8)
        top.set_ylabel("accuracy (%)" if i % columns == 0 else "")
        bottom.set_ylabel("ρ(w + αd)" if i % columns == 0 else "")
    for j in range(len(names), rows * columns):
        axes[2 * (j // columns), j % columns].axis("off")
        axes[2 * (j // columns) + 1, j % columns].axis("off")
    fig.tight_layout()
    return fig
