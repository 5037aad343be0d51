"""Whether a curve repeats: the same configuration measured again in a second process.

Some functions scale differently from one process to the next, not from one round
to the next: on a free-threaded build a zlib + numpy decode stage ran 1.0x to 1.7x
as fast on two threads as on one depending on the process (where its objects and
arenas landed, what a native library sized at import).  Rounds within one probe
cannot see that, so the detector probes the configuration its verdict leans on a
second time, at the two levels the verdict compares, and this module says whether
the two processes disagree beyond their own round-to-round spread::

    first  process:  S1 = T1(k) / T1(1), within [low1, high1] over its rounds
    second process:  S2 = T2(k) / T2(1), within [low2, high2]
    disagree  <=>  the ranges do not overlap  and  |S1 - S2| >= MARGIN

When they disagree and the two readings lead to different verdicts, the verdict is
inconclusive, with both figures; when they agree on the verdict it stands, noted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ._records import Configuration, Curve
from ._shape import rounds_range
from ._sweep import SweepSettings

__all__ = ["Reading", "disagreement", "repeat_plan", "repeated_label"]

MARGIN = 0.15  # speedup gap that counts as a real difference (as between configurations)


@dataclass(frozen=True)
class Reading:
    """One process's speedup at ``k`` and the range its rounds allow."""

    k: int
    speedup: float
    low: float
    high: float

    def __str__(self) -> str:
        if self.high - self.low < 0.005:
            return f"{self.speedup:.2f}x"
        return f"{self.speedup:.2f}x (rounds {self.low:.2f}x to {self.high:.2f}x)"


def reading(curve: Curve, k: int) -> Reading | None:
    """The speedup of ``curve`` at ``k`` with its range; None where it lacks either point."""
    one, at = curve.point(1), curve.point(k)
    speedup = curve.speedup_at(k)
    if one is None or at is None or speedup is None:
        return None
    lo1, hi1 = rounds_range(one)
    lok, hik = rounds_range(at)
    return Reading(k, speedup, lok / hi1 if hi1 > 0 else 0.0, hik / lo1 if lo1 > 0 else speedup)


def disagreement(first: Curve, second: Curve, k: int) -> tuple[Reading, Reading] | None:
    """Both readings when the two processes disagree beyond their own noise, else None."""
    a, b = reading(first, k), reading(second, k)
    if a is None or b is None:
        return None
    apart = a.high < b.low or b.high < a.low
    return (a, b) if apart and abs(a.speedup - b.speedup) >= MARGIN else None


def repeated_label(label: str) -> str:
    return f"{label} (second process)"


def repeat_plan(
    curve: Curve, k: int, settings: SweepSettings
) -> tuple[Configuration, SweepSettings]:
    """The configuration and settings that measure ``curve`` again at 1 and ``k`` only."""
    config = replace(curve.configuration, label=repeated_label(curve.label))
    return config, replace(
        settings,
        levels=(1, k),
        max_rounds=max(settings.min_rounds, settings.max_rounds - 2),
        budget_s=settings.budget_s / 2,
    )
