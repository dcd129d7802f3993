"""The version of what a training run computes, recorded in every run folder.

A run folder's ``config.json`` says which config was trained; ``training_semantics`` says under
which version of the training code's *meaning*. When a fix changes what training computes for
the same config, :data:`TRAINING_SEMANTICS` goes up, and every finished or interrupted run of an
older version is stale (:meth:`awp_lib.runs.RunDir.is_stale`): it is set aside (renamed, never
deleted) and trained again, never read.

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
