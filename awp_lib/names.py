"""Run names, from one namer: the training command's default folders, the book's run list and
the reproduction suites all name a run by its config, so that they find each other's runs."""
from __future__ import annotations

import math

from .config import Config, make_config


def run_name(cfg: Config, label: str | None = None, prefix: str = "") -> str:
    """``at-piecewise-s0``, ``at-awp0.01-s0``, ``at-l2-s0``, ``trades-awp0.005-s0``; the controls
    ``at-rwp0.01-s0`` (random direction), ``at-awp0.01-global-s0``, ``at-ema-s0``,
    ``at-awp0.01-swa-s0``; plus ``-<model>-<dataset>-<norm>-w<width>-eps<eps>`` for what differs
    from the profile's preset (``w``: the width of a SmallCNN or an MLP). ``prefix`` goes in front (``ch5-trades-s0``); a ``label`` replaces the
    derived part for a run a chapter names by its role (``ch1-at-s0``, ``ch2-mlp-s0``)."""
    if label is not None:
        return f"{prefix}{label}-s{cfg.seed}"
    preset = make_config(cfg.profile)
    if cfg.method == "at" and cfg.awp_gamma == 0 and cfg.regularizer == "none" and cfg.weight_average == "none":
        base = f"at-{cfg.schedule}"
    else:
        base = cfg.method + (f"-{cfg.regularizer}" if cfg.regularizer != "none" else "") \
            + cfg.awp_tag + cfg.average_tag
        if cfg.schedule != preset.schedule:
            base += f"-{cfg.schedule}"
    tag = "".join(f"-{getattr(cfg, k)}" for k in ("model", "dataset", "norm") if getattr(cfg, k) != getattr(preset, k))
    if cfg.model in ("smallcnn", "mlp") and cfg.width != preset.width:
        tag += f"-w{cfg.width}"
    if not math.isclose(cfg.eps, preset.eps):
        tag += f"-eps{cfg.eps:.4g}"
    return f"{prefix}{base}{tag}-s{cfg.seed}"
