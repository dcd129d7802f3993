"""A run of the book: :class:`Run`, the one type the run list returns and the pages read.

A run is its profile, its name and its config overrides; its folder is
``runs/<profile>/<name>/`` (or under another ``root``, as a suite's). :meth:`Run.rows` trains,
resumes or reads it; in the book build (``AWP_BOOK_RUNS=read``) it only reads finished runs of
the run list (:mod:`awp_lib.book.runlist`), so nothing trains inside a page. What training does
with a folder that holds a run is decided in :mod:`awp_lib.resume`, and :meth:`Run.state` says
it in the words of :data:`awp_lib.runs.STATES`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from ..checkpoints import load_run_model
from ..config import Config, load_saved, make_config
from ..data import NUM_CLASSES, project_root
from ..io import load_torch
from ..monitor import final_test_images
from ..resume import folder_state
from ..runs import RunDir
from ..stuck import TrainingStuck, stuck_at_chance
from ..train import train


def runs_folder(profile: str, root: str | os.PathLike | None = None) -> Path:
    """``<root>/<profile>``, the folder of a profile's run folders; ``root`` defaults to the
    project's ``runs/``."""
    return Path(root or project_root() / "runs") / profile


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """One run: ``profile``, ``name`` and the ``overrides`` of the profile's preset it trains;
    ``root``: a folder of ``<profile>/<name>`` folders (None: the project's ``runs/``)."""

    profile: str
    name: str
    overrides: dict = dataclasses.field(default_factory=dict)
    root: str | os.PathLike | None = None

    @property
    def config(self) -> Config:
        return make_config(self.profile, **self.overrides)

    @property
    def folder(self) -> RunDir:
        return RunDir(runs_folder(self.profile, self.root) / self.name)

    def with_config(self, **overrides) -> Run:
        """The same run name with more config overrides (a page's parameters on top of the list's)."""
        return dataclasses.replace(self, overrides={**self.overrides, **overrides})

    def state(self) -> str:
        """Where its folder stands for its config: one of :data:`awp_lib.runs.STATES`
        (:func:`awp_lib.resume.folder_state`)."""
        return folder_state(self.folder, self.config)

    def rows(self, progress: str | None = None) -> list[dict]:
        """Its per-epoch metrics: trained, resumed or read back (a finished run with the same config
        is not recomputed, so chapters share runs). A folder trained under another config is set
        aside and trained again (the run list changed). ``progress``: what a training prints (one
        line per epoch; none at smoke). With ``AWP_BOOK_RUNS=read`` (the book build, after ``python -m
        awp_lib book-runs``) the run must be listed and finished: nothing trains inside a page."""
        if os.environ.get("AWP_BOOK_RUNS") == "read":
            self._check_listed()
            state = self.state()
            if state == "stuck":
                raise RuntimeError(f"run {self.name!r} is stuck at chance (python -m awp_lib book-runs "
                                   f"--profile {self.profile} --only {self.name} says why): no page reads its numbers")
            if state != "done":
                raise RuntimeError(f"run {self.name!r} is not finished: run `python -m awp_lib book-runs "
                                   f"--profile {self.profile}` first (make book does)")
            return self.folder.rows()  # read, never trained: no lock taken
        progress = progress or ("none" if self.profile == "smoke" else "line")
        return train(self.config, self.folder.path, progress=progress, other_config="set-aside")

    def finished_rows(self) -> list[dict] | None:
        """Its metrics if its folder holds it finished (:meth:`state` ``done``), else None: a read,
        never a training, whether the run list holds it or not (the paper's Appendix C runs)."""
        return self.folder.rows() if self.state() == "done" else None

    def stuck(self) -> tuple[list[dict], str | None]:
        """For a run that may stop stuck at chance (chapter 4's demonstration of the collapse): its
        metrics and the reason it stopped (None if it trained to its end). With ``AWP_BOOK_RUNS=read``
        it must be listed, and stopped or finished."""
        if os.environ.get("AWP_BOOK_RUNS") == "read":
            self._check_listed()
            if self.state() not in ("stuck", "done"):
                raise RuntimeError(f"run {self.name!r} is not trained: run `python -m awp_lib book-runs "
                                   f"--profile {self.profile}` first (make book does)")
        else:
            try:
                return self.rows(), None
            except TrainingStuck:
                pass
        rows, cfg = self.folder.rows(), load_saved(self.folder.config_file)
        why = stuck_at_chance(cfg, rows, NUM_CLASSES[cfg.dataset])
        return rows, (None if why is None else f"stuck at chance at epoch {rows[-1]['epoch']}: {why}")

    def model(self, which: str | int = "last"):
        """Its model at checkpoint ``which`` in eval mode: ``last``, ``best``, ``epochN``, or an
        epoch number (its ``epochN.pt``, else ``last`` or ``best`` if it is theirs)."""
        run = self.folder
        if isinstance(which, int):
            epoch = which
            which = next((k for k in (epoch, "last", "best") if run.checkpoint(k).exists()
                          and (k == epoch or load_torch(run.checkpoint(k))["epoch"] == epoch)), None)
            if which is None:
                raise ValueError(f"run {self.name!r} keeps no checkpoint of epoch {epoch}: "
                                 f"epochs {run.saved_epochs()}, last and best")
        return load_run_model(run.checkpoint(which))[0].eval()

    def saved_epochs(self) -> list[int]:
        """The epochs whose checkpoints it keeps (``epochN.pt``: ten evenly spaced)."""
        return self.folder.saved_epochs()

    def pseudo_labels(self):
        """The pseudo-labels of the unlabelled pool an RST run trained with (made by its standard
        labeller and kept in its folder)."""
        path = self.folder.pseudo_labels
        if not path.exists():
            raise RuntimeError(f"run {self.name!r} has no pseudo-labels ({path}): train it first, "
                               f"python -m awp_lib book-runs --profile {self.profile} --only {self.name}")
        return load_torch(path)

    def record(self) -> dict:
        """What the finished run was trained and measured with: precision (``amp``), intra-op
        threads, training semantics, and the number of test images of its final evaluation."""
        path = self.folder.config_file
        saved, cfg = json.loads(path.read_text()), load_saved(path)
        return {"precision": "fp32" if cfg.amp == "none" else cfg.amp, "threads_per_run": saved.get("threads"),
                "training_semantics": saved.get("training_semantics", 1),
                "test_images": final_test_images(cfg)}

    def _check_listed(self) -> None:
        from .runlist import book_runs  # import cycle: the run list is made of Runs
        listed = book_runs(self.profile)
        if self.name not in listed or listed[self.name].config.to_dict() != self.config.to_dict():
            why = "is not in" if self.name not in listed else "has another config than in"
            raise RuntimeError(f"run {self.name!r} ({self.overrides}) {why} the book's run list "
                               "(awp_lib/book/runlist.py, book_runs): add it there, so that "
                               "`python -m awp_lib book-runs` trains it before the pages execute")
