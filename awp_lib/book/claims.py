"""The claims the book tests on its own runs, computed from the numbers and printed as holds or FAILS.

A claim is ``(text, holds, numbers)``: what is claimed, whether this page's numbers bear it out,
and those numbers. :class:`Claims` records them for a page (printed as they come, saved once
with the results); :func:`robust_overfitting` (chapter 2) and :func:`awp_vs_at` (chapter 4)
compute them from :func:`awp_lib.book.summarize` results over seeds.

At the miniature's scale robust overfitting shows in the robust test *loss* and in the gap more
than in accuracy (``README``, measured), so the claims ask for what the seeds can show: a fall
on most seeds beyond its standard error, not a number of points.
"""
from __future__ import annotations

import math

Claim = tuple[str, bool, str]


class Claims:
    """The claims of one page, in order; each printed as it is recorded."""

    def __init__(self, quiet: bool = False):
        self.items: list[Claim] = []
        self.quiet = quiet

    def add(self, text: str, holds: bool, numbers: str) -> None:
        self.items.append((text, bool(holds), numbers))
        if not self.quiet:
            print(("holds:  " if holds else "FAILS:  ") + text + f"  [{numbers}]")

    def extend(self, claims: list[Claim]) -> None:
        for c in claims:
            self.add(*c)

    def records(self) -> list[dict]:
        """The claims as saved in ``results/<profile>/<chapter>.json``."""
        return [{"claim": t, "holds": h, "numbers": n} for t, h, n in self.items]

    def held(self) -> int:
        return sum(h for _, h, _ in self.items)

    def summary(self) -> str:
        return "; ".join(("holds: " if h else "FAILS: ") + t for t, h, _ in self.items)


def count(n: int, noun: str) -> str:
    """``n`` and ``noun`` in the number ``n`` asks for: ``count(1, "seed")`` is ``"1 seed"``,
    ``count(5, "seed")`` is ``"5 seeds"``."""
    return f"{n} {noun}{'s' * (n != 1)}"


def scale_of(key: str) -> tuple[float, int]:
    """How a summary key is printed: losses as they are (3 decimals), accuracies, gaps and
    rises in points or per cent (times 100, 1 decimal)."""
    return (1, 3) if key.endswith("_loss") else (100, 1)


def pts(fraction: float, digits: int = 1) -> str:
    """An accuracy, gap or drop (a fraction) in points: ``0.1234`` -> ``"12.3"``."""
    return f"{100 * fraction:.{digits}f}"


def pm(summary: dict, key: str, scale: float | None = None, digits: int | None = None) -> str:
    """``mean ± standard error`` of ``key`` in a :func:`awp_lib.book.summarize` result (times
    ``scale``, by default :func:`scale_of`); the mean alone for one seed."""
    default_scale, default_digits = scale_of(key)
    scale = default_scale if scale is None else scale
    digits = default_digits if digits is None else digits
    mean = f"{scale * summary[key]:.{digits}f}"
    return mean if summary["n"] < 2 else f"{mean} ± {scale * summary['se'][key]:.{digits}f}"


def pm_paired(paired: dict, key: str) -> str:
    """A signed paired difference (:func:`awp_lib.book.paired`) of ``key``, ``± SE`` with two
    seeds or more."""
    scale, digits = scale_of(key)
    text = f"{scale * paired['mean']:+.{digits}f}"
    n = len(paired["per_seed"])
    return text if n < 2 else f"{text} ± {scale * paired['se']:.{digits}f}"


def _beyond(mean: float, se: float, k: float, n: int) -> bool:
    """A positive ``mean`` over ``n`` seeds above ``k`` standard errors (never with one seed: no
    error to compare with)."""
    return n >= 2 and math.isfinite(se) and mean > 0 and mean > k * se


def robust_overfitting(at: dict, min_share: float = 0.8) -> list[Claim]:
    """Chapter 2's claims on AT over seeds (``at``: :func:`awp_lib.book.summarize`): its test robust
    accuracy falls from the validation-selected best to the last checkpoint on at least
    ``min_share`` of the seeds (4 of 5) with a mean drop beyond 3 standard errors, and its robust
    test loss rises from best to last beyond 3 standard errors."""
    n, drops = at["n"], [p["drop"] for p in at["per_seed"]]
    need = math.ceil(min_share * n)
    falls = sum(d > 0 for d in drops)
    out = [(f"AT's test robust accuracy falls from best to last on at least {need} of {count(n, 'seed')}, "
            "with a mean drop of more than 3 standard errors",
            falls >= need and _beyond(at["drop"], at["se"]["drop"], 3, n),
            f"falls on {falls} of {n}; drop {pm(at, 'drop', digits=2)} points "
            f"(seeds: {', '.join(f'{100 * d:.2f}' for d in drops)})")]
    if "loss_rise" in at:
        rises = [p["loss_rise"] for p in at["per_seed"]]
        out.append(("AT's robust test loss rises from best to last by more than 3 standard errors",
                    _beyond(at["loss_rise"], at["se"]["loss_rise"], 3, n),
                    f"rise {pm(at, 'loss_rise')}% (seeds: {', '.join(f'{100 * r:+.0f}%' for r in rises)})"))
    return out


def awp_vs_at(at: dict, awp: dict, paired_last: dict) -> list[Claim]:
    """Chapter 4's claims, AT-AWP against AT over the same seeds: (i) AT-AWP's last test robust
    accuracy is above AT's, paired by seed (``paired_last``: :func:`awp_lib.book.paired`), by more
    than 2 standard errors; (ii) its best-to-last drop is at most half of AT's; (iii) so is its
    robust test loss rise; (iv) its last robust generalization gap is smaller."""
    out = [("AT-AWP's last test robust accuracy is above AT's, paired by seed, by more than 2 standard "
            "errors", _beyond(paired_last["mean"], paired_last["se"], 2, at["n"]),
            f"AT-AWP {pm(awp, 'last_test_robust')}%, AT {pm(at, 'last_test_robust')}%; paired "
            f"{100 * paired_last['mean']:+.2f}"
            + (f" ± {100 * paired_last['se']:.2f}" if at["n"] > 1 else "") + " points"),
           ("AT-AWP's best-to-last drop is at most half of AT's",
            awp["drop"] <= at["drop"] / 2,
            f"AT-AWP {pm(awp, 'drop', digits=2)}, AT {pm(at, 'drop', digits=2)} points")]
    if "loss_rise" in at and "loss_rise" in awp:
        out.append(("AT-AWP's robust test loss rise (best to last) is at most half of AT's",
                    awp["loss_rise"] <= at["loss_rise"] / 2,
                    f"AT-AWP {pm(awp, 'loss_rise')}%, AT {pm(at, 'loss_rise')}%"))
    out.append(("AT-AWP's last robust generalization gap is smaller than AT's",
                awp["last_gap"] < at["last_gap"],
                f"AT-AWP {pm(awp, 'last_gap')}, AT {pm(at, 'last_gap')} points"))
    return out


def sharpness(at_best: float, at_last: float, awp_last: float) -> list[Claim]:
    """Chapter 4's claim (v) on the average-case flatness of three checkpoints (larger is sharper):
    AT's last checkpoint is sharper than its best and than AT-AWP's last."""
    return [("AT's last checkpoint is sharper than its best (average-case flatness)",
             at_last > at_best, f"last {at_last:.3f}, best {at_best:.3f}"),
            ("AT's last checkpoint is sharper than AT-AWP's last (average-case flatness)",
             at_last > awp_last, f"AT {at_last:.3f}, AT-AWP {awp_last:.3f}")]
