"""Run files: atomic writes (a crash never leaves a half-written file), safe checkpoint loading,
metrics as CSV. (Inside this module ``io`` below is the standard library's: imports are absolute.)"""
from __future__ import annotations

import csv
import os
from io import StringIO
from pathlib import Path

import torch


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file and rename: a crash never leaves a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_torch(obj, path: Path) -> None:
    atomic_write(path, lambda p: torch.save(obj, p))


def save_text(text: str, path: Path) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def load_torch(path: Path):
    """Checkpoints hold tensors, numbers, strings and dicts only: loaded with ``weights_only=True``."""
    return torch.load(path, map_location="cpu", weights_only=True)


def metrics_csv(rows: list[dict]) -> str:
    buf = StringIO()
    if rows:
        names = list(dict.fromkeys(k for r in rows for k in r))  # evaluated epochs have more columns
        w = csv.DictWriter(buf, fieldnames=names)
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()
