"""Argument checks shared by every module: a bad value is an error naming it and the valid choices."""
from __future__ import annotations


def check_choice(name: str, value, choices) -> None:
    """Raise ``ValueError`` naming the bad ``value`` and the valid ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(map(str, choices))}")


def parse_number(text) -> float:
    """A number written as ``0.031``, ``8/255`` or ``1e-2`` (CLI flags, papermill parameters); a bad
    one is a ``ValueError`` naming it."""
    text = str(text).strip()
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            return float(a) / float(b)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{text!r} is not a number (e.g. 0.031, 8/255 or 1e-2)") from None


def parse_numbers(text) -> list[float]:
    """A comma list of :func:`parse_number` values (``"0,2/255,8/255"``); empty: ``[]``."""
    return [parse_number(t) for t in str(text).split(",") if t.strip()]
