"""Argument checks shared by every module: a bad value is an error naming it and the valid choices."""
from __future__ import annotations


def check_choice(name: str, value, choices) -> None:
    """Raise ``ValueError`` naming the bad ``value`` and the valid ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(map(str, choices))}")
