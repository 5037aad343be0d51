"""What the tuner measures and remembers: its constants, samples of counters, trials.

The constants are the tuner's whole policy (``_tuner`` applies them); the docs'
tuning page quotes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._config import FnKind
from ._stage import StageRuntime

__all__ = [
    "BUSY",
    "COMPUTES",
    "CONTENTION",
    "EVEN",
    "GAIN",
    "GIL_BOUND",
    "LINEAR_GAIN",
    "MAX_WINDOW_S",
    "MIN_ITEMS",
    "MIN_WINDOW_S",
    "SATURATED",
    "SERIAL",
    "SETTLE_S",
    "SHIFT",
    "SHIFTED",
    "STRONG",
    "USES_CPU",
    "WARM_UP_S",
    "Sample",
    "Trial",
    "Tuned",
    "WAITED",
    "classify",
    "note",
    "sample",
]

MIN_WINDOW_S = 0.2  # a measurement lasts at least this long ...
MIN_ITEMS = 16  # ... and sees at least this many items
MAX_WINDOW_S = 3.0  # ... unless items are that slow
SETTLE_S = 0.05  # after a resize, before measuring: buffers refill, threads start
WARM_UP_S = 10.0  # after an executor switch, at most this long for the new workers' first items
GAIN = 1.10  # a step is kept when the pipeline's rate rose by 10%
STRONG = 2.0  # ... over two windows, or over one when it rose this much (noise never doubles it)
GIL_BOUND = 0.85  # a GIL build's threads using this many cores together: the GIL's ceiling
EVEN = 0.95  # a step that kept at least this rate while another stage saturated is kept
LINEAR_GAIN = 1.7  # per doubling: a waiting stage's step that paid off this well is followed by x8
RETRIES = 2  # a level undone this many times is not tried again (see Tuned.forgive)
SHIFT = 0.25  # the rate moved this much (SHIFTED windows running): retry what failed
SHIFTED = 3
BUSY = 0.5  # a stage busy less than this share of its worker time limits nothing
SATURATED = 0.9  # another stage this busy after a step limits the rate: keep the step
COMPUTES = 0.3  # CPU time / busy time (the most seen) at or above this: the stage computes
CONTENTION = 1.25  # CPU per item this many times its 1-worker value: contention
USES_CPU = 0.1  # CPU / busy below this: too little CPU to judge serialization by
SERIAL = 0.75  # CPU / busy fell below this share of what it was: the threads serialized


@dataclass
class Sample:
    """One stage's cumulative counters at one instant."""

    items: int = 0
    busy: float = 0.0
    idle: float = 0.0
    cpu: float = 0.0


@dataclass
class Tuned:
    """What the tuner knows of one tuned stage."""

    stage: StageRuntime
    failed: set[tuple[str, int]] = field(default_factory=set)  # (executor, size): no help
    undone: dict[tuple[str, int], int] = field(default_factory=dict)  # times each was undone
    cpu_per_item_1: float | None = None  # on threads with one worker
    computes: bool = True
    cpu_share: float = 0.0  # the most CPU / busy time seen on threads
    done_switching: bool = False
    last_gain: float = 0.0  # what the last kept step gave

    def fail(self, level: tuple[str, int]) -> None:
        """Record that ``level`` (executor, size) was tried and undone."""
        self.failed.add(level)
        self.undone[level] = self.undone.get(level, 0) + 1

    def forgive(self) -> None:
        """The rate shifted: levels undone once may be tried again, once.

        A level undone twice stays out: on a noisy machine the rate shifts often,
        and retrying every time would go back and forth between two levels.
        """
        self.failed = {level for level in self.failed if self.undone[level] >= RETRIES}


@dataclass
class Trial:
    """A step being tried: what to go back to, and what it must beat."""

    tuned: Tuned
    executor: str  # what to go back to
    size: int
    base: float  # the rate before
    base_cpu: float | None = None  # the stage's CPU / busy time before (thread stages)
    base_busy: float = 0.0  # the stage's busy workers before (busy share x size)
    warm_from: int | None = None  # a switch: the new workers' counters start here
    rates: list[float] = field(default_factory=list)  # the pipeline's rate in each window since


WAITED = " while its workers mostly waited (each other, the GIL, or the stages around it)"


def note(t: Tuned, why: str) -> str:
    """The stage's ``tuning`` note: where it is now, what it does, and ``why``."""
    stage = t.stage
    does = "computes" if t.computes else "waits"
    return f"auto: {stage.executor_name} x{stage.workforce.size} ({does}; {why})"


def sample(stage: StageRuntime) -> Sample:
    """Sum a stage's worker counters now (each read is atomic; see ``_stats``)."""
    out = Sample()
    for c in list(stage.counters):
        out.items += c.items_in
        out.busy += c.busy
        out.idle += c.starved + c.blocked
        out.cpu += c.cpu
    return out


def classify(t: Tuned, d: Sample) -> None:
    """Whether ``t``'s stage computes (stay within the cores) or waits (may grow past them)."""
    stage = t.stage
    if stage.config.fn_kind in (FnKind.ASYNC, FnKind.ASYNC_GENERATOR):
        t.computes = False  # calls in flight on one loop wait by nature
    elif stage.executor is not None:
        t.computes = True  # CPU time is spent elsewhere: stay within the cores
    elif d.busy > 0:
        # The most CPU share seen: on a busy machine a window can show a
        # stage that computes getting little CPU, never one that waits using it.
        t.cpu_share = max(t.cpu_share, d.cpu / d.busy)
        t.computes = t.cpu_share >= COMPUTES
        if stage.workforce.size == 1 and d.items:
            t.cpu_per_item_1 = d.cpu / d.items
