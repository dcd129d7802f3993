"""Stored checkpoints of the book's runs measured again: whether the cheap per-epoch monitor picks
the epoch a strong attack would (:func:`monitor_agreement`), and their flatness (:class:`RunFlatness`)."""
from __future__ import annotations

import torch

from .. import data, landscape
from ..config import resolve_device
from ..monitor import robust_accuracy
from .store import Run
from .summaries import correlation


def monitor_agreement(run: Run, steps: int = 20) -> dict:
    """Does the cheap per-epoch monitor pick the epoch that PGD-``steps`` would pick?

    Every saved checkpoint (``epochN.pt``) of ``run`` that the monitor evaluated is attacked
    again with PGD-``steps`` on the validation split; returns the per-epoch pairs, the epoch each
    one selects among them, and their rank correlation (Spearman)."""
    cfg = run.config
    rows = {r["epoch"]: r for r in run.folder.rows() if "val_robust" in r}
    epochs = [e for e in run.saved_epochs() if e in rows]
    if len(epochs) < 2:
        raise ValueError(f"{run.name}: {len(epochs)} saved checkpoint(s) the monitor evaluated; need 2 or more")
    device = resolve_device(cfg.device)
    splits = data.get_splits(cfg.dataset, cfg.train_size, cfg.val_size, cfg.test_size, cfg.seed)
    loader = data.Loader(*splits.val, 512, device=device)
    strong = {}
    for e in epochs:
        model = run.model(e).to(device)
        torch.manual_seed(cfg.seed)
        strong[e] = robust_accuracy(model, loader, cfg, steps)[1]
    weak = {e: rows[e]["val_robust"] for e in epochs}
    pick_w, pick_s = max(weak, key=weak.get), max(strong, key=strong.get)
    return {"epochs": epochs, "monitor": weak, "strong": strong, "monitor_attack": f"PGD-{cfg.eval_attack_steps}",
            "strong_attack": f"PGD-{steps}", "monitor_pick": pick_w, "strong_pick": pick_s,
            "same_pick": pick_w == pick_s,
            "spearman": correlation([weak[e] for e in epochs], [strong[e] for e in epochs], "spearman"),
            "strong_at_monitor_pick": strong[pick_w], "strong_best": strong[pick_s]}


class RunFlatness:
    """Flatness (:func:`awp_lib.landscape.flatness`) of the book's runs' checkpoints under one
    setting (``settings``: a chapter's ``flatness`` entry of ``configs/chapters.yaml``), on the
    images ``data`` and the threat model of ``cfg``; each checkpoint is measured once.
    ``flat(run, which)`` returns ``{"rho": ..., "average": ..., "worst": ...}``."""

    def __init__(self, settings: dict, data: tuple, cfg, device):
        self.s, self.data, self.cfg, self.device = settings, data, cfg, device
        self.measured: dict[tuple[str, str, str], dict] = {}

    def __call__(self, run: Run, which: str | int = "last") -> dict:
        key = (run.profile, run.name, which)
        if key not in self.measured:
            s, cfg = self.s, self.cfg
            self.measured[key] = landscape.flatness(
                run.model(which).to(self.device), self.data, alpha0=s["alpha0"], k=s["k"], gamma=s["gamma"],
                awp_steps=s["awp_steps"], seed=0, eps=cfg.eps, attack_alpha=cfg.alpha,
                attack_steps=s["attack_steps"], norm=cfg.norm, n=s["n"])
        return self.measured[key]
