"""A run stuck at chance: how it is recognised and the error that stops it.

AWP with too large a budget or learning rate can push a model to one constant prediction that it
never leaves (chapter 4). :func:`stuck_at_chance` recognises it from the per-epoch metrics, and
the training loop stops such a run with :class:`TrainingStuck` rather than finishing it as if
healthy; its checkpoints are kept.
"""
from __future__ import annotations

from . import methods
from .config import Config


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingStuck(TrainingDiverged):
    """The model sits at chance (:func:`stuck_at_chance`); its checkpoints are kept."""


def stuck_at_chance(cfg: Config, rows: list[dict], num_classes: int) -> str | None:
    """Why a run is stuck at chance after its AWP warm-up, or None. Stuck: for ``cfg.stuck_epochs``
    consecutive epochs its training loss within 1 % of the method's loss at a uniform prediction
    (:func:`awp_lib.methods.chance_loss`; ln(classes) for AT), or its monitored validation natural
    accuracy at most chance + 2 points at that many consecutive evaluated epochs (the last one
    included). ``stuck_epochs`` = 0 turns the check off."""
    n = cfg.stuck_epochs
    after = [r for r in rows if r["epoch"] > cfg.awp_warmup]
    if n == 0 or len(after) < n:
        return None
    chance_loss, chance_acc = methods.chance_loss(cfg.method, num_classes, cfg), 1 / num_classes
    tail = after[-n:]
    if all(abs(r["train_loss"] - chance_loss) <= 0.01 * chance_loss for r in tail):
        losses = ", ".join(f"{r['train_loss']:.3f}" for r in tail)
        return (f"training loss {losses} in epochs {tail[0]['epoch']}-{tail[-1]['epoch']}, within 1% of "
                f"{chance_loss:.3f}, the {cfg.method.upper()} loss of a uniform prediction over {num_classes} classes")
    monitored = [r for r in after if "val_natural" in r][-n:]
    if len(monitored) == n and monitored[-1] is rows[-1] and all(
            r["val_natural"] <= chance_acc + 0.02 for r in monitored):
        accs = ", ".join(f"{100 * r['val_natural']:.1f}%" for r in monitored)
        return (f"validation natural accuracy {accs} at epochs "
                f"{', '.join(str(r['epoch']) for r in monitored)}, at most chance "
                f"({100 * chance_acc:.0f}%) + 2 points")
    return None


def check_stuck(cfg: Config, rows: list[dict], num_classes: int, out) -> None:
    why = stuck_at_chance(cfg, rows, num_classes)
    if why is None:
        return
    run = f"run {out}" if out is not None else f"this {cfg.method} run"
    warm = f" (after an AWP warm-up of {cfg.awp_warmup} epochs)" if cfg.awp_gamma else ""
    kept = f"; its checkpoints up to epoch {rows[-1]['epoch']} are kept in {out}" if out is not None else ""
    raise TrainingStuck(
        f"{run} is stuck at chance at epoch {rows[-1]['epoch']}{warm}: {why}. The "
        f"model predicts the same for every input and will not recover{kept}. Remedies: an AWP warm-up "
        f"(--awp-warmup N: plain training for N epochs first), a smaller gamma (--awp-gamma, now "
        f"{cfg.awp_gamma:g}) or learning rate (--lr, now {cfg.lr:g}); --stuck-epochs 0 turns this check off.")
