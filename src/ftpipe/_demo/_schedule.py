"""The demo's time budget: how long each workload may measure, and on which configurations.

The detector measures longer when figures are unstable, so on a slow or busy
machine a full run would overrun.  :class:`Schedule` predicts the rest of the
battery from the probe times seen so far and, once behind, shortens
measurements, then leaves out the older stock GIL builds, then keeps only the
free-threaded pair; its notes say what was cut.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from .._runtime import usable_cores
from ..diagnose import Configuration
from ._interpreters import has_numpy
from ._workloads import Workload

__all__ = ["PIPELINE_MIN_S", "Schedule", "busy_note", "probes"]

# The whole demo's time budget (issue: under 3 minutes on 2 cores), the share of it
# the battery may use (the pipeline comparison gets the rest), what one probe is
# expected to take at least, and the least time worth starting a pipeline run with.
DEADLINE_S = 150.0
QUICK_DEADLINE_S = 90.0
BATTERY_SHARE = 0.72
FULL_PROBE_S = 5.0
QUICK_PROBE_S = 3.0
PIPELINE_MIN_S = 8.0


def probes(workload: Workload, configs: Sequence[Configuration]) -> int:
    """How many probe subprocesses the workload will start."""
    return sum(1 for c in configs if not workload.needs_numpy or has_numpy(c.executable))


def busy_note() -> str:
    """A warning when other processes already keep the cores busy ("" when quiet)."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return ""
    cores = usable_cores()
    if load <= max(1.0, 0.5 * cores):
        return ""
    return (
        f"Other processes were busy when the demo started (1-minute load average {load:.1f} "
        f"on {cores} usable cores): expect noisy figures and 'inconclusive' verdicts; rerun "
        "on a quieter machine for clean ones."
    )


class Schedule:
    """Keeps the demo within its time budget on a slow or busy machine.

    A machine already busy at the start gets short measurements (as with
    ``--quick``) from the first workload; otherwise :meth:`plan` cuts as the
    module docstring says.
    """

    def __init__(self, quick: bool, busy: bool) -> None:
        self.started = time.perf_counter()
        self.deadline = QUICK_DEADLINE_S if quick else DEADLINE_S
        self.quick = quick or busy
        self._spent = {True: 0.0, False: 0.0}  # quick? -> seconds in probes
        self._probes = {True: 0, False: 0}
        self.notes: list[str] = []
        if busy and not quick:
            self.notes.append(
                "So measurements were shortened (as with --quick) from the start: full ones "
                "would not settle on a busy machine and would overrun the time budget."
            )

    def left(self, share: float = 1.0) -> float:
        """Seconds left of ``share`` of the budget (negative once past it)."""
        return share * self.deadline - (time.perf_counter() - self.started)

    def cost(self, quick: bool) -> float:
        """Seconds one probe is expected to take (what was seen, or a floor)."""
        floor = QUICK_PROBE_S if quick else FULL_PROBE_S
        n = self._probes[quick]
        return max(floor, self._spent[quick] / n) if n else floor

    def record(self, quick: bool, probes: int, seconds: float) -> None:
        """Count ``probes`` that took ``seconds`` in all, for later predictions."""
        self._spent[quick] += seconds
        self._probes[quick] += probes

    def _note(self, key: str, text: str) -> None:
        if not any(key in n for n in self.notes):
            self.notes.append(text)

    def plan(
        self, title: str, remaining: Sequence[Workload], configs: Sequence[Configuration]
    ) -> tuple[bool, list[Configuration]]:
        """Quick or not, and which configurations, for the next workload."""
        left = self.left(BATTERY_SHARE)

        def fits(chosen: Sequence[Configuration], quick: bool) -> bool:
            return left >= sum(probes(w, chosen) for w in remaining) * self.cost(quick)

        if not self.quick and fits(configs, False):
            return False, list(configs)
        if not self.quick:
            self._note(
                "shortened",
                f"The machine was slow (busy?): from '{title}' on, measurements were "
                "shortened (as with --quick) to keep the demo within its time budget.",
            )
        if fits(configs, True):
            return True, list(configs)
        stock = [c for c in configs if c.role == "gil-build"]
        kept = [c for c in configs if c.role != "gil-build"] + stock[:1]
        if len(kept) < len(configs):
            self._note(
                "left out",
                f"Behind schedule: from '{title}' on, "
                f"{', '.join(c.label for c in stock[1:])} were left out.",
            )
        if fits(kept, True) or len(kept) <= 2:
            return True, kept
        pair = [c for c in configs if c.role != "gil-build"] or stock[:1]
        self._note(
            "only",
            f"Far behind schedule: from '{title}' on, only {', '.join(c.label for c in pair)} "
            "were measured.",
        )
        return True, pair
