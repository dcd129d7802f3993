"""The chapters' measurement settings and results files.

``configs/chapters.yaml`` holds what each chapter measures at each profile (:func:`settings`);
every chapter writes its headline numbers to ``results/<profile>/<chapter>.json``
(:func:`save_results`), which chapter 6 and the README read.
"""
from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import torch
import yaml

from ..config import PROFILES
from ..data import project_root
from ..io import save_text
from ..validate import check_choice


def start_page(profile: str) -> str:
    """The first call of every page: checks ``profile`` and runs torch at one intra-op thread, so
    that a page's numbers do not depend on the machine's cores (and pages can execute side by
    side, one core each: ``python -m awp_lib book-pages``)."""
    check_choice("profile", profile, PROFILES)
    torch.set_num_threads(1)
    return profile


def settings(chapter: str, profile: str) -> dict:
    """The measurement settings of ``chapter`` at ``profile`` from ``configs/chapters.yaml``."""
    path = project_root() / "configs" / "chapters.yaml"
    table = yaml.safe_load(path.read_text())
    check_choice(f"chapter (in {path.name})", chapter, tuple(table))
    check_choice(f"profile of {chapter} (in {path.name})", profile, tuple(table[chapter]))
    return table[chapter][profile]


def strict(value):
    """``value`` with every NaN or infinite float (a standard error over one seed, a correlation of
    constants) as None and numpy / torch scalars as Python numbers: strict JSON, ``null`` where a
    number is undefined."""
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_results(profile: str, chapter: str, results: dict) -> Path:
    """Write ``results/<profile>/<chapter>.json`` (atomically, strict JSON: :func:`strict`), with the
    profile and a timestamp."""
    path = project_root() / "results" / profile / f"{chapter}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"profile": profile, "chapter": chapter, "written": time.strftime("%Y-%m-%d %H:%M:%S"),
               "machine": platform.machine(), **results}
    save_text(json.dumps(strict(payload), indent=1, default=float, allow_nan=False), path)
    return path


def load_results(profile: str, chapter: str) -> dict | None:
    path = project_root() / "results" / profile / f"{chapter}.json"
    return json.loads(path.read_text()) if path.exists() else None
