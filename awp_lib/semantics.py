"""The version of what a training run computes, recorded in every run folder.

A run folder's ``config.json`` says which config was trained; ``training_semantics`` says under
which version of the training code's *meaning*. When a fix changes what training computes for
the same config, :data:`TRAINING_SEMANTICS` goes up, and every finished or interrupted run of an
older version is stale: it is set aside (renamed, never deleted) and trained again, never read.

Versions:

1. (no key) bf16 autocast reused its cached bf16 copies of the weights after AWP changed them
   in place, so AWP and its variants trained as their method without AWP.
2. Every forward pass sees the weights as they are (``awp_lib.precision``).
3. The monitor and the final evaluation attack :func:`awp_lib.evalcopy.eval_copy` of the model
   (BN folded into the convolutions, channels-last, batches of ``eval_batch``): the same function,
   its numbers (and so the pick of ``best``) differ by rounding.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

TRAINING_SEMANTICS = 3
KEY = "training_semantics"


def recorded(record: Path) -> int | None:
    """The version in a run's ``config.json`` or ``done.json`` (1 where the key is missing); None
    if the file does not exist."""
    record = Path(record)
    if not record.exists():
        return None
    return json.loads(record.read_text()).get(KEY, 1)


def folder_version(folder: Path) -> int | None:
    """The version a run folder was trained or executed under: its ``config.json``'s, else its
    ``done.json``'s (a suite's notebook folder); None for an empty or missing folder."""
    for name in ("config.json", "done.json"):
        version = recorded(Path(folder) / name)
        if version is not None:
            return version
    return None


def is_stale(folder: Path) -> bool:
    """Whether ``folder`` holds a run trained or executed under another version than today's."""
    version = folder_version(folder)
    return version is not None and version != TRAINING_SEMANTICS


def set_aside(folder: Path, suffix: str | None = None) -> Path:
    """Rename a stale run folder to ``<name>.stale-v<version>`` (or ``<name>.<suffix>``; with a
    timestamp if taken) and return the new path; nothing in it is deleted."""
    folder = Path(folder)
    target = folder.with_name(f"{folder.name}.{suffix or f'stale-v{folder_version(folder)}'}")
    if target.exists():
        target = folder.with_name(f"{target.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.rename(target)
    return target
