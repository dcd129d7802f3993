"""What training does with a run folder that already holds a run, decided in one place.

:func:`plan` reads the folder once (its version, config and last checkpoint) and says what
training ``cfg`` into it does; :func:`prepare` carries that out before the loop starts (set the
folder aside, refuse it, forget its final evaluation, or write its config), and
:func:`folder_state` turns it into the state word that every listing prints.
"""
from __future__ import annotations

import dataclasses
import json

import torch

from . import data, semantics
from .config import Config, config_diff
from .io import load_torch, save_text
from .monitor import FINAL_KEYS, final_done, forget_final_evaluation
from .progress import _log
from .runs import RunDir
from .stuck import stuck_at_chance


@dataclasses.dataclass
class Plan:
    """What training a config into a run folder does, decided in one place (:func:`plan`) for
    :func:`train` and for every listing of states (:func:`folder_state`).

    ``action``: ``new``; ``stale`` (trained under older training semantics: set aside, trained
    again); ``other-config`` (trained under another config beyond the final evaluation's keys,
    ``diff``: refused, or set aside and trained again when asked); ``resume`` (interrupted);
    ``final`` (trained, its final evaluation missing or asked for with other ``diff`` keys: redone);
    ``done``. ``ck``: the folder's last checkpoint, read once."""
    action: str
    diff: dict = dataclasses.field(default_factory=dict)
    ck: dict | None = None


def plan(run: RunDir, cfg: Config) -> Plan:
    """:class:`Plan` of training ``cfg`` into ``run``."""
    if run.is_stale():
        return Plan("stale")
    saved = run.saved_config()
    diff = config_diff(saved, cfg) if saved is not None else {}
    if set(diff) - set(FINAL_KEYS):
        return Plan("other-config", diff)
    if not run.checkpoint("last").exists():
        return Plan("new", diff)
    ck = load_torch(run.checkpoint("last"))
    if ck["epoch"] < cfg.epochs:
        return Plan("resume", diff, ck)
    return Plan("final" if diff or not final_done(cfg, json.loads(ck["metrics"])) else "done", diff, ck)


def folder_state(run: RunDir, cfg: Config) -> str:
    """Where ``run`` stands for ``cfg``, one of :data:`awp_lib.runs.STATES`: ``busy`` (a live
    process trains it now), ``stale`` (:class:`Plan`'s ``stale`` and ``other-config``), ``stuck``
    (interrupted at chance, :func:`stuck_at_chance`: training it again fails at once), ``partial``
    (``resume`` or ``final``), ``done`` or ``new``."""
    if run.trainer() is not None:
        return "busy"
    p = plan(run, cfg)
    if p.action == "resume":
        stuck = stuck_at_chance(cfg, json.loads(p.ck["metrics"]), data.NUM_CLASSES[cfg.dataset])
        return "partial" if stuck is None else "stuck"
    return {"stale": "stale", "other-config": "stale", "final": "partial"}.get(p.action, p.action)


def prepare(run: RunDir, cfg: Config, progress: str, other_config: str, writer: bool, world: int) -> Plan:
    """Carry out :func:`plan` on the folder before training: set it aside, refuse it, forget its
    final evaluation, or write its config; returns the plan left to train."""
    if world > 1:  # every process reads the folder before process 0 moves anything
        torch.distributed.barrier()
    p = plan(run, cfg)
    moved = p.action == "stale" or p.action == "other-config" and other_config == "set-aside"
    if p.action == "other-config" and not moved:
        raise ValueError(f"{run.path} holds a run with another config (key: old -> new): "
                         + ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in p.diff.items())
                         + ". Use another --out, or delete that folder to start over.")
    if moved:
        why = (f"trained under training semantics v{run.version()}, today's is "
               f"v{semantics.TRAINING_SEMANTICS}" if p.action == "stale" else "trained under another config: "
               + ", ".join(f"{k}={a!r}" for k, (a, _) in p.diff.items()))
        if writer:  # kept aside, trained again
            _log(progress, f"{run.path}: {why}; moved to {run.set_aside(None if p.action == 'stale' else 'other-config')}")
        p = Plan("new")
    if world > 1:
        torch.distributed.barrier()
    if writer:
        run.checkpoints.mkdir(parents=True, exist_ok=True)
    if p.diff:  # training kept, its final evaluation redone
        if writer:
            forget_final_evaluation(run, cfg, p.diff)
        _log(progress, f"{run.path}: final evaluation redone with " + ", ".join(
            f"{k}={b!r} (was {a!r})" for k, (a, b) in p.diff.items()))
        p = Plan(p.action, p.diff, load_torch(run.checkpoint("last")) if p.ck is not None else None)
    elif writer and run.saved_config() is None:
        record = {semantics.KEY: semantics.TRAINING_SEMANTICS, "threads": torch.get_num_threads()}
        save_text(json.dumps({**cfg.to_dict(), **record}, indent=2), run.config_file)
    return p
