"""Run summaries: the headline numbers of one run (:func:`best_last`) and of several seeds
(:func:`summarize`, :func:`paired`), read off the metrics the training loop writes, and whether
the cheap per-epoch monitor picks the epoch a strong attack would (:func:`monitor_agreement`)."""
from __future__ import annotations

import statistics

import numpy as np
import torch

from .. import data, landscape
from ..checkpoints import load_run_model
from ..config import load_saved, resolve_device
from ..runs import RunDir
from ..train import robust_accuracy
from .store import run_dir, saved_epochs


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


def after_decay(rows: list[dict]) -> dict:
    """The monitor's numbers at the first learning-rate decay and at the end (the same attack at
    both epochs): ``decay_epoch``, ``gap_at_decay``, ``gap_at_end`` and ``train_rise`` (train
    robust accuracy at the end minus at the decay, at w)."""
    end = rows[-1]["epoch"]
    decay = (decay_epochs(rows) or [end])[0]
    return {"decay_epoch": decay, "gap_at_decay": gap_at(rows, decay), "gap_at_end": gap_at(rows, end),
            "train_rise": at_epoch(rows, end, "train_robust") - at_epoch(rows, decay, "train_robust")}


def late_stage_start(rows: list[dict], threshold: float = 0.10):
    """First evaluated epoch whose robust generalization gap exceeds ``threshold`` (Appendix C), or None."""
    return next((r["epoch"] for r in rows if "gap" in r and r["gap"] > threshold), None)


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


def check_attacks(results: dict[str, dict[str, float]], slack: float = 0.02, ordered: bool = False) -> None:
    """The sanity check of an evaluation battery, ``{model: {attack: accuracy}}`` (keys starting
    with ``seconds`` are timings): every accuracy a fraction; no attack above natural accuracy on
    the same images (``aa_subset_*`` and ``autoattack``: ``aa_subset_natural`` where given) beyond
    ``slack``; with ``ordered``, also PGD-100 <= PGD-20 and AutoAttack <= PGD-100 on its images.
    A failure names the model and the numbers."""
    for which, res in results.items():
        acc = {k: v for k, v in res.items() if not k.startswith("seconds")}
        bad = [f"{k} = {v} is not an accuracy" for k, v in acc.items() if not 0.0 <= v <= 1.0]
        for k, v in acc.items():
            subset = k == "autoattack" or k.startswith("aa_subset")
            natural = acc.get("aa_subset_natural", acc.get("natural")) if subset else acc.get("natural")
            if "natural" not in k and natural is not None and v > natural + slack:
                bad.append(f"{k} above natural")
        for weak, strong in (("pgd20", "pgd100"), ("aa_subset_pgd100", "autoattack")) if ordered else ():
            if weak in acc and strong in acc and acc[strong] > acc[weak] + slack:
                bad.append(f"{strong} above {weak}")
        if bad:
            raise AssertionError(f"{which}: {'; '.join(bad)} (tolerance {slack}): {acc}")


def check_metrics(runs: dict[str, list[dict]], epochs: int | None = None) -> None:
    """The sanity check of the runs a page reads: every run trained ``epochs`` epochs (if given);
    at every evaluated epoch each accuracy is a fraction, robust accuracy is never above natural
    on the same split, and the robust loss is not negative; a failure names the run, the epoch
    and the value."""
    for name, rows in runs.items():
        if epochs is not None and len(rows) != epochs:
            raise AssertionError(f"{name}: {len(rows)} epochs recorded, {epochs} expected")
        for r in (r for r in rows if "val_robust" in r):
            for part in ("train", "val", "test"):
                nat, rob = r[f"{part}_natural"], r[f"{part}_robust"]
                if not (0.0 <= rob <= nat + 1e-9 and nat <= 1.0):
                    raise AssertionError(f"{name}, epoch {r['epoch']}: {part} natural {nat}, robust {rob}: "
                                         "not accuracies with robust <= natural")
            if r.get("test_robust_loss", 0.0) < 0:
                raise AssertionError(f"{name}, epoch {r['epoch']}: robust loss {r['test_robust_loss']} < 0")


def stack(runs: list[list[dict]], key: str):
    """``(epochs, values)`` of ``key`` at the evaluated epochs of several runs (one row per run;
    accuracies in per cent, losses as they are), as numpy arrays."""
    evaluated = [[r for r in rows if "val_robust" in r] for rows in runs]
    scale = 1 if key.endswith("_loss") else 100
    return (np.array([r["epoch"] for r in evaluated[0]]),
            scale * np.array([[r[key] for r in e] for e in evaluated]))


def monitor_agreement(profile: str, name: str, steps: int = 20) -> dict:
    """Does the cheap per-epoch monitor pick the epoch that PGD-``steps`` would pick?

    Every saved checkpoint (``epochN.pt``) of run ``name`` that the monitor evaluated is attacked
    again with PGD-``steps`` on the validation split; returns the per-epoch pairs, the epoch each
    one selects among them, and their rank correlation (Spearman)."""

    d = run_dir(profile, name)
    run = RunDir(d)
    cfg = load_saved(run.config_file)
    rows = {r["epoch"]: r for r in run.rows() if "val_robust" in r}
    epochs = [e for e in saved_epochs(profile, name) if e in rows]
    if len(epochs) < 2:
        raise ValueError(f"{name}: {len(epochs)} saved checkpoint(s) the monitor evaluated; need 2 or more")
    device = resolve_device(cfg.device)
    splits = data.get_splits(cfg.dataset, cfg.train_size, cfg.val_size, cfg.test_size, cfg.seed)
    loader = data.Loader(*splits.val, 512, device=device)
    strong = {}
    for e in epochs:
        model = load_run_model(run.checkpoint(e))[0].to(device)
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


class RunFlatness:
    """Flatness (:func:`awp_lib.landscape.flatness`) of the book's runs' checkpoints under one
    setting (``settings``: a chapter's ``flatness`` entry of ``configs/chapters.yaml``), on the
    images ``data`` and the threat model of ``cfg``; each checkpoint is measured once.
    ``flat(name, which)`` returns ``{"rho": ..., "average": ..., "worst": ...}``."""

    def __init__(self, profile: str, settings: dict, data: tuple, cfg, device):
        self.profile, self.s, self.data, self.cfg, self.device = profile, settings, data, cfg, device
        self.measured: dict[tuple[str, str], dict] = {}

    def __call__(self, name: str, which: str = "last") -> dict:
        if (name, which) not in self.measured:
            s, cfg = self.s, self.cfg
            model = load_run_model(RunDir(run_dir(self.profile, name)).checkpoint(which))[0]
            self.measured[name, which] = landscape.flatness(
                model.to(self.device), self.data, alpha0=s["alpha0"], k=s["k"], gamma=s["gamma"],
                awp_steps=s["awp_steps"], seed=0, eps=cfg.eps, attack_alpha=cfg.alpha,
                attack_steps=s["attack_steps"], norm=cfg.norm, n=s["n"])
        return self.measured[name, which]


def correlation(a, b, method: str = "pearson") -> float:
    """Pearson or Spearman correlation of two sequences; NaN for fewer than 3 points or a constant one."""
    import pandas as pd  # optional dependency (the pages)
    a, b = pd.Series(list(a), dtype=float), pd.Series(list(b), dtype=float)
    return a.corr(b, method=method) if len(a) >= 3 and a.std() > 0 and b.std() > 0 else float("nan")


def landscape_checkpoints(rows: list[dict], saved: list[int], schedule: str) -> dict:
    """Chapter 3's checkpoints of one run: the saved one before the split (the first lr decay of a
    piecewise schedule, else the late stage where the gap passes 10 points, else the middle of
    training), one 40 % of the way from the split to the end, best and last. Returns ``split``,
    ``split_what``, ``decay`` (the first epoch at the lower rate), ``selected`` (``{epoch:
    [roles]}``, in order: a checkpoint with two roles is measured once), ``role_epoch`` and
    ``labels`` (``{epoch: "epoch 20 (before the first lr decay)"}``)."""
    last, best = rows[-1]["epoch"], best_last(rows)["best_epoch"]
    decays = decay_epochs(rows)
    decay = decays[0] + 1 if decays else None
    late = late_stage_start(rows)
    if schedule == "piecewise" and decay:
        split, split_what = decay, "first lr decay"
    else:
        split = late or max(1, last // 2)
        split_what = "late stage (gap > 10 points)" if late else "middle of training"
    pre = max([e for e in saved if e < split] or [min(saved + [best, last])])
    after = [e for e in saved if e >= split and e != last]
    mid = min(after, key=lambda e: abs(e - (split + 0.4 * (last - split)))) if after else None
    selected: dict[int, list[str]] = {}
    for role, e in (("pre", pre), ("mid", mid), ("best", best), ("last", last)):
        if e is not None:
            selected.setdefault(e, []).append(role)
    selected = dict(sorted(selected.items()))
    text = {"pre": f"before the {split_what}", "mid": f"after the {split_what}",
            "best": "best (validation)", "last": "last"}
    return {"split": split, "split_what": split_what, "decay": decay, "selected": selected,
            "role_epoch": {role: e for e, roles in selected.items() for role in roles},
            "roles": {e: ", ".join(text[r] for r in roles) for e, roles in selected.items()},
            "labels": {e: f"epoch {e} (" + ", ".join(text[r] for r in roles) + ")"
                       for e, roles in selected.items()}}
