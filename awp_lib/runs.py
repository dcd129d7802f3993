"""A run folder: its layout, its reads, its version and its lock, in one place.

A training run writes into one folder (``runs/<profile>/<name>/`` in the book and the suites,
any ``--out`` on the command line)::

    config.json        the config trained, with the training-semantics version and the threads
    metrics.json/.csv  one row per epoch (written atomically every epoch)
    checkpoints/       last.pt (to resume), best.pt (by validation), epochN.pt (ten, evenly spaced)
    pseudo_labels.pt   RST only: the labels of the unlabelled pool
    notebook.ipynb     a suite's run only: the executed notebook, and done.json when it finished
    landscape/, evaluate/  what the landscape and evaluate commands wrote about its checkpoints

:class:`RunDir` is the only module that spells these names. :meth:`RunDir.training` is the
exclusive lock :func:`awp_lib.train.train` holds for as long as it writes the folder: a second
trainer of the same folder fails at once with :class:`RunBusy`, naming the holder (host and
pid). It is an ``flock``, which the kernel releases when its holder dies, so a crashed run's
folder is free again at once. The lock file lies beside the folder (``.<name>.train-lock``),
so that setting a stale folder aside keeps it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from . import semantics
from .io import metrics_csv, save_text


# Where a run folder stands, in every listing (book-runs --list, reproduce --dry-run, the pages):
# done; partial (interrupted, or its final evaluation or notebook still to do: it resumes); stuck
# (stopped at chance: it fails again); stale (older training semantics or another config: set
# aside, trained again); busy (a live process holds its lock); new.
STATES = ("done", "partial", "stuck", "stale", "busy", "new")


class RunBusy(RuntimeError):
    """Another live process holds the run folder's lock."""


def _holder_text(lock: Path) -> str:
    try:
        return lock.read_text().strip() or "an unknown process"
    except FileNotFoundError:
        return "an unknown process"


def _try_flock(lock: Path):
    """An open descriptor of ``lock`` holding its exclusive ``flock``, or None if a live process
    holds it. The kernel releases a flock when its holder dies, so a crashed run's lock is free."""
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:  # the file may have been removed (and made anew) by a holder that just released it
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _holder(lock: Path) -> str | None:
    """``host:pid`` of the live process holding ``lock``, or None."""
    if not lock.exists():
        return None
    fd = _try_flock(lock)
    if fd is None:
        return _holder_text(lock)
    os.close(fd)  # free: nobody holds it
    return None


@contextlib.contextmanager
def exclusive(lock: Path, what: str):
    """Hold ``lock`` (an exclusive ``flock``; the file says ``host:pid`` for the messages) within
    the block; :class:`RunBusy` naming the holder if a live process has it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _try_flock(lock)
    if fd is None:
        raise RunBusy(f"{what} is held by {_holder_text(lock)}")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()}:{os.getpid()}".encode())
        yield lock
    finally:
        lock.unlink(missing_ok=True)  # before the release: a waiting taker then sees a new file
        os.close(fd)


class RunDir:
    """One run folder (see the module doc)."""

    CONFIG = "config.json"
    METRICS = "metrics.json"
    METRICS_CSV = "metrics.csv"
    CHECKPOINTS = "checkpoints"
    PSEUDO_LABELS = "pseudo_labels.pt"
    NOTEBOOK = "notebook.ipynb"
    DONE = "done.json"
    NOTEBOOK_LOCK = ".lock"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.name = self.path.name
        self.config_file = self.path / self.CONFIG
        self.metrics_file = self.path / self.METRICS
        self.metrics_csv = self.path / self.METRICS_CSV
        self.checkpoints = self.path / self.CHECKPOINTS
        self.pseudo_labels = self.path / self.PSEUDO_LABELS
        self.notebook = self.path / self.NOTEBOOK
        self.done_file = self.path / self.DONE

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ----- layout
    def checkpoint(self, which: str | int = "last") -> Path:
        """``checkpoints/<which>.pt``: ``last``, ``best``, ``epochN``, or an epoch number (its ``epochN.pt``)."""
        return self.checkpoints / (f"epoch{which}.pt" if isinstance(which, int) else f"{which}.pt")

    def saved_epochs(self) -> list[int]:
        """The epochs whose ``epochN.pt`` the run keeps."""
        return sorted(int(p.stem[len("epoch"):]) for p in self.checkpoints.glob("epoch*.pt"))

    @staticmethod
    def of_checkpoint(checkpoint: str | os.PathLike) -> RunDir | None:
        """The run folder holding ``<run>/checkpoints/X.pt`` (with its ``config.json``), else None."""
        p = Path(checkpoint)
        run = RunDir(p.parent.parent)
        return run if p.parent.name == RunDir.CHECKPOINTS and run.config_file.is_file() else None

    # ----- reads
    def saved_config(self) -> dict | None:
        """``config.json`` as written (with its records), or None before the first epoch."""
        return json.loads(self.config_file.read_text()) if self.config_file.exists() else None

    def rows(self) -> list[dict]:
        """The per-epoch metrics (empty before the first epoch)."""
        return json.loads(self.metrics_file.read_text()) if self.metrics_file.exists() else []

    def write_rows(self, rows: list[dict]) -> None:
        """Write the per-epoch metrics (JSON and CSV), each atomically."""
        save_text(json.dumps(rows, indent=1), self.metrics_file)
        save_text(metrics_csv(rows), self.metrics_csv)

    def finished(self) -> bool:
        """Trained to its last epoch (by its metrics and config)."""
        cfg, rows = self.saved_config(), self.rows()
        return cfg is not None and bool(rows) and rows[-1]["epoch"] >= cfg["epochs"]

    # ----- version
    def version(self) -> int | None:
        """The training-semantics version it was trained (``config.json``) or executed
        (``done.json``, a suite's notebook folder) under; None for an empty or missing folder."""
        for record in (self.config_file, self.done_file):
            version = semantics.recorded(record)
            if version is not None:
                return version
        return None

    def is_stale(self) -> bool:
        """Trained or executed under another version than today's."""
        version = self.version()
        return version is not None and version != semantics.TRAINING_SEMANTICS

    def set_aside(self, suffix: str | None = None) -> Path:
        """Rename the folder to ``<name>.stale-v<version>`` (or ``<name>.<suffix>``; with a
        timestamp if taken) and return the new path; nothing in it is deleted."""
        target = self.path.with_name(f"{self.name}.{suffix or f'stale-v{self.version()}'}")
        if target.exists():
            target = self.path.with_name(f"{target.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        self.path.rename(target)
        return target

    # ----- locks
    @property
    def train_lock(self) -> Path:
        path = self.path.resolve()
        return path.with_name(f".{path.name}.train-lock")

    def training(self):
        """The exclusive lock of training this folder (a context manager; :class:`RunBusy`)."""
        return exclusive(self.train_lock, f"run folder {self.path} (training)")

    def trainer(self) -> str | None:
        """``host:pid`` of the live process training this folder, or None."""
        return _holder(self.train_lock)

    def executing(self):
        """The exclusive lock of executing a suite's notebook in this folder."""
        return exclusive(self.path / self.NOTEBOOK_LOCK, f"run {self.name} (notebook)")

    def executor(self) -> str | None:
        """``host:pid`` of the live process executing this folder's notebook, or None."""
        return _holder(self.path / self.NOTEBOOK_LOCK)
