"""The run store: the book's runs under ``runs/<profile>/<name>/``, trained or read back.

:func:`train_run` trains, resumes or reads a run; in the book build (``AWP_BOOK_RUNS=read``)
it only reads finished runs of the run list (:mod:`awp_lib.book.runlist`), so nothing trains
inside a page. :func:`run_state` says where a run stands; :func:`stuck_run` reads a run that
may have stopped stuck at chance; :func:`run_record` says what a run was trained with.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..checkpoints import load_run_model as load_checkpoint_model
from ..config import config_diff, load_saved, make_config
from ..data import NUM_CLASSES, project_root
from ..io import load_torch
from ..runs import RunDir
from ..train import FINAL_KEYS, TrainingStuck, final_done, final_test_images, stuck_at_chance, train
from . import runlist


def run_dir(profile: str, name: str, root: str | os.PathLike | None = None) -> Path:
    """``<root>/<profile>/<name>``; ``root`` defaults to the project's ``runs/``."""
    return Path(root or project_root() / "runs") / profile / name


def run_state(profile: str, name: str, overrides: dict | None = None) -> str:
    """One of :data:`awp_lib.runs.STATES`: ``done`` (trained to its last epoch, final evaluation
    made), ``partial`` (interrupted, or its final evaluation is missing or asked for with other
    settings: it resumes), ``stuck`` (stopped at chance, :func:`awp_lib.train.stuck_at_chance`: it
    fails again at once), ``stale`` (trained under older training semantics, or, with
    ``overrides``, under another config than theirs beyond the final evaluation's keys: it is set
    aside and trained again), ``busy`` (a live process is training it now) or ``new``. With
    ``overrides``, a finished run counts as done only for that config."""
    run = RunDir(run_dir(profile, name))
    if run.trainer() is not None:
        return "busy"
    saved = run.saved_config()
    if run.is_stale() or saved is not None and overrides is not None and _trained_otherwise(
            run, make_config(profile, **overrides)):
        return "stale"
    last = run.checkpoint("last")
    if not last.exists():
        return "new"
    saved = saved or {}
    ck = load_torch(last)
    if ck["epoch"] < saved.get("epochs", float("inf")):
        cfg = load_saved(run.config_file)
        stuck = stuck_at_chance(cfg, json.loads(ck["metrics"]), NUM_CLASSES[cfg.dataset])
        return "partial" if stuck is None else "stuck"
    if overrides is not None:
        cfg = make_config(profile, **overrides)
        if config_diff(saved, cfg) or not final_done(cfg, json.loads(ck["metrics"])):
            return "partial"
    return "done"


def _trained_otherwise(run: RunDir, cfg) -> dict:
    """The training keys (not the final evaluation's) on which the run in ``run`` differs from
    ``cfg``: ``{key: (saved, asked)}``, empty when it has none or no config yet."""
    saved = run.saved_config()
    if saved is None:
        return {}
    diff = config_diff(saved, cfg)
    return {k: v for k, v in diff.items() if k not in FINAL_KEYS}


def train_run(name: str, profile: str, _progress: str | None = None, _root: str | None = None,
              **overrides) -> list[dict]:
    """Train (or resume, or just load) the run ``runs/<profile>/<name>`` (``_root``: another folder
    of ``<profile>/<run>`` folders, as a suite's); returns its metrics.

    A finished run with the same config is read back, not recomputed, so chapters share runs.
    With ``AWP_BOOK_RUNS=read`` (the book build, after ``python -m awp_lib book-runs``) a run
    must be one of :func:`awp_lib.book.runlist.book_runs` and finished: nothing trains inside a page.
    """
    cfg = make_config(profile, **overrides)
    run = RunDir(run_dir(profile, name, _root))
    if os.environ.get("AWP_BOOK_RUNS") == "read":
        listed = runlist.book_runs(profile)
        if name not in listed or make_config(profile, **listed[name]).to_dict() != cfg.to_dict():
            why = "is not in" if name not in listed else "has another config than in"
            raise RuntimeError(f"run {name!r} ({overrides}) {why} the book's run list "
                               "(awp_lib/book/runlist.py, book_runs): add it there, so that "
                               "`python -m awp_lib book-runs` trains it before the pages execute")
        state = run_state(profile, name, overrides)
        if state == "stuck":
            raise RuntimeError(f"run {name!r} is stuck at chance (python -m awp_lib book-runs --profile "
                               f"{profile} --only {name} says why): no page reads its numbers")
        if state != "done":
            raise RuntimeError(f"run {name!r} is not finished: run `python -m awp_lib book-runs "
                               f"--profile {profile}` first (make book does)")
        return run.rows()  # read, never trained: no lock taken
    if run.trainer() is None and _trained_otherwise(run, cfg):
        run.set_aside("other-config")  # the run list changed: kept aside, trained again
    # a run that trains prints one line per epoch (none at smoke)
    progress = _progress or ("none" if profile == "smoke" else "line")
    return train(cfg, run.path, progress=progress)


def stuck_run(name: str, profile: str, **overrides) -> tuple[list[dict], str | None]:
    """A run that may stop stuck at chance (chapter 4's demonstration of the collapse): its
    metrics and the reason it stopped (None if it trained to its end). With ``AWP_BOOK_RUNS=read``
    it must be listed and stopped or finished."""
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
    run = RunDir(folder)
    rows, cfg = run.rows(), load_saved(run.config_file)
    why = stuck_at_chance(cfg, rows, NUM_CLASSES[cfg.dataset])
    return rows, (None if why is None else f"stuck at chance at epoch {rows[-1]['epoch']}: {why}")


def pseudo_labels(profile: str, name: str):
    """The pseudo-labels of the unlabelled pool that the RST run ``name`` trained with (it made
    them with its standard labeller and kept them in its folder)."""
    path = RunDir(run_dir(profile, name)).pseudo_labels
    if not path.exists():
        raise RuntimeError(f"run {name!r} has no pseudo-labels ({path}): train it first, "
                           f"python -m awp_lib book-runs --profile {profile} --only {name}")
    return load_torch(path)


def saved_epochs(profile: str, name: str) -> list[int]:
    """The epochs whose checkpoints run ``name`` keeps (``epochN.pt``: ten evenly spaced)."""
    return RunDir(run_dir(profile, name)).saved_epochs()


def load_run_model(name: str, profile: str, which: str | int = "last", root: str | None = None):
    """The model of run ``runs/<profile>/<name>`` (under ``root`` if given) at checkpoint ``which``:
    ``last``, ``best``, ``epochN``, or an epoch number (its ``epochN.pt``, else ``last`` or ``best``
    if it is theirs), in eval mode."""
    run = RunDir(run_dir(profile, name, root))
    if isinstance(which, int):
        epoch = which
        which = next((k for k in (epoch, "last", "best") if run.checkpoint(k).exists()
                      and (k == epoch or load_torch(run.checkpoint(k))["epoch"] == epoch)), None)
        if which is None:
            raise ValueError(f"run {name!r} keeps no checkpoint of epoch {epoch}: "
                             f"epochs {run.saved_epochs()}, last and best")
    return load_checkpoint_model(run.checkpoint(which))[0].eval()


def run_record(profile: str, name: str) -> dict:
    """What a finished run was trained and measured with: precision (``amp``), intra-op threads,
    training semantics, and the number of test images of its final evaluation."""
    path = RunDir(run_dir(profile, name)).config_file
    saved, cfg = json.loads(path.read_text()), load_saved(path)
    return {"precision": "fp32" if cfg.amp == "none" else cfg.amp, "threads_per_run": saved.get("threads"),
            "training_semantics": saved.get("training_semantics", 1),
            "test_images": final_test_images(cfg)}
