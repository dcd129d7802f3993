"""The training loop's progress: a tqdm bar in a terminal, one line per epoch otherwise, or nothing."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


def _interactive(progress: str) -> bool:
    return progress == "bar" or (progress == "auto" and sys.stderr.isatty())


def _bar(progress, total, start):
    if not _interactive(progress):
        return None
    return tqdm(total=total, initial=start, unit="epoch")


def format_row(row) -> str:
    """A row's headline numbers on one line (accuracies, loss, learning rate)."""
    keys_ = ("train_robust", "val_robust", "test_natural", "test_robust")
    return " ".join(f"{k}={row[k]:.3f}" for k in keys_ if k in row) + f" loss={row['train_loss']:.3f} lr={row['lr']:.4g}"


def _report(bar, progress, row, cfg):
    if bar is not None:
        bar.set_postfix_str(format_row(row))
        bar.update(1)
    else:
        _log(progress, f"epoch {row['epoch']}/{cfg.epochs} {format_row(row)} ({row['time_total']:.1f}s)")


def _log(progress, msg):
    if progress != "none":
        print(msg, flush=True)
