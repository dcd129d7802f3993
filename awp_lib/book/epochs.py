"""The epochs of a run that the chapters point at: its learning-rate decays, the start of its
late stage (Appendix C), the monitor's numbers there, and chapter 3's checkpoints."""
from __future__ import annotations

from .summaries import best_last


def decay_epochs(rows: list[dict]) -> list[int]:
    """Epochs after which the learning rate dropped by 5x or more (the piecewise decays)."""
    return [a["epoch"] for a, b in zip(rows, rows[1:]) if b["lr"] < 0.2 * a["lr"]]



def at_epoch(rows: list[dict], epoch: int, key: str) -> float:
    """The monitor's ``key`` at the last evaluated epoch <= ``epoch`` (NaN if none)."""
    ev = [r for r in rows if key in r and r["epoch"] <= epoch]
    return ev[-1][key] if ev else float("nan")



def gap_at(rows: list[dict], epoch: int) -> float:
    """The robust generalization gap at the last evaluated epoch <= ``epoch``."""
    return at_epoch(rows, epoch, "gap")



def after_decay(rows: list[dict]) -> dict:
    """The monitor's numbers at the first learning-rate decay and at the end (the same attack at
    both epochs): ``decay_epoch``, ``gap_at_decay``, ``gap_at_end`` and ``train_rise`` (train
    robust accuracy at the end minus at the decay, at w)."""
    end = rows[-1]["epoch"]
    decay = (decay_epochs(rows) or [end])[0]
    return {"decay_epoch": decay, "gap_at_decay": gap_at(rows, decay), "gap_at_end": gap_at(rows, end),
            "train_rise": at_epoch(rows, end, "train_robust") - at_epoch(rows, decay, "train_robust")}



def late_stage_start(rows: list[dict], threshold: float = 0.10):
    """First evaluated epoch whose robust generalization gap exceeds ``threshold`` (Appendix C), or None."""
    return next((r["epoch"] for r in rows if "gap" in r and r["gap"] > threshold), None)



def landscape_checkpoints(rows: list[dict], saved: list[int], schedule: str) -> dict:
    """Chapter 3's checkpoints of one run: the saved one before the split (the first lr decay of a
    piecewise schedule, else the late stage where the gap passes 10 points, else the middle of
    training), one 40 % of the way from the split to the end, best and last. Returns ``split``,
    ``split_what``, ``decay`` (the first epoch at the lower rate), ``selected`` (``{epoch:
    [roles]}``, in order: a checkpoint with two roles is measured once), ``role_epoch`` and
    ``labels`` (``{epoch: "epoch 20 (before the first lr decay)"}``)."""
    last, best = rows[-1]["epoch"], best_last(rows)["best_epoch"]
    decays = decay_epochs(rows)
    decay = decays[0] + 1 if decays else None
    late = late_stage_start(rows)
    if schedule == "piecewise" and decay:
        split, split_what = decay, "first lr decay"
    else:
        split = late or max(1, last // 2)
        split_what = "late stage (gap > 10 points)" if late else "middle of training"
    pre = max([e for e in saved if e < split] or [min(saved + [best, last])])
    after = [e for e in saved if e >= split and e != last]
    mid = min(after, key=lambda e: abs(e - (split + 0.4 * (last - split)))) if after else None
    selected: dict[int, list[str]] = {}
    for role, e in (("pre", pre), ("mid", mid), ("best", best), ("last", last)):
        if e is not None:
            selected.setdefault(e, []).append(role)
    selected = dict(sorted(selected.items()))
    text = {"pre": f"before the {split_what}", "mid": f"after the {split_what}",
            "best": "best (validation)", "last": "last"}
    return {"split": split, "split_what": split_what, "decay": decay, "selected": selected,
            "role_epoch": {role: e for e, roles in selected.items() for role in roles},
            "roles": {e: ", ".join(text[r] for r in roles) for e, roles in selected.items()},
            "labels": {e: f"epoch {e} (" + ", ".join(text[r] for r in roles) + ")"
                       for e, roles in selected.items()}}
