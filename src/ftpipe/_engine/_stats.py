"""Per-stage statistics: per-worker counters, merged into frozen snapshots on read.

::

    worker 0 ─► WorkerCounters ─┐
    worker 1 ─► WorkerCounters ─┼─ merge() ─► StageStats ─┐
    ...                         ┘                         ├─► PipelineStats (+ find_bottleneck)
    source   ─► WorkerCounters ──── merge() ─► StageStats ┘

Each worker thread owns one ``WorkerCounters`` and is its only writer, so the hot
path takes no lock and touches no shared cache line.  ``stats()`` sums them from
another thread; a read may be a moment stale, never torn (attribute loads and
stores of ints and floats are atomic on every CPython build).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["PipelineStats", "StageStats", "WorkerCounters"]


class WorkerCounters:
    """Counters written by exactly one worker thread."""

    __slots__ = (
        "blocked",
        "busy",
        "cpu",
        "failures",
        "items_in",
        "items_out",
        "retries",
        "starved",
    )

    def __init__(self) -> None:
        self.items_in = 0
        self.items_out = 0
        self.failures = 0
        self.retries = 0
        self.busy = 0.0
        self.starved = 0.0
        self.blocked = 0.0
        self.cpu = 0.0  # CPU seconds of the busy time, where measured (thread stages)


@dataclass(frozen=True)
class StageStats:
    """A snapshot of one stage.

    Attributes:
        name: The stage's name (``"source"`` for the source).
        concurrency: Workers (or coroutines in flight) of the stage now: a resize
            or the tuner changes it while the pipeline runs.
        executor: ``"thread"``, a kind name, or the executor's class name (now:
            ``executor="auto"`` may move a running stage).
        items_in: Inputs taken.
        items_out: Outputs emitted.
        failures: Inputs that failed after retries (skipped or raised).
        retries: Extra attempts made.
        busy_s: Worker-seconds spent in the stage function.
        starved_s: Worker-seconds spent waiting for input.
        blocked_s: Worker-seconds spent waiting for room in the output buffer.
        buffer_occupancy: Items in the stage's output buffer now.
        buffer_capacity: Capacity of that buffer.
        tuning: What the tuner chose for this stage and why ("" when it is not tuned).
    """

    name: str
    concurrency: int
    executor: str
    items_in: int
    items_out: int
    failures: int
    retries: int
    busy_s: float
    starved_s: float
    blocked_s: float
    buffer_occupancy: int
    buffer_capacity: int
    tuning: str = ""

    @property
    def utilization(self) -> float:
        """Busy fraction of the stage's worker time (0..1)."""
        total = self.busy_s + self.starved_s + self.blocked_s
        return self.busy_s / total if total > 0 else 0.0


@dataclass(frozen=True)
class PipelineStats:
    """A snapshot of a whole pipeline, safe to take from any thread while it runs.

    Attributes:
        stages: The source first, then every stage in order.
        elapsed_s: Seconds since the pipeline started.
        bottleneck: The name of the stage limiting throughput (the one whose
            workers spent the most time busy, per worker), or None before
            anything ran.
    """

    stages: tuple[StageStats, ...]
    elapsed_s: float
    bottleneck: str | None

    def __getitem__(self, name: str) -> StageStats:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name!r}; stages: {[s.name for s in self.stages]}")

    def __iter__(self) -> Iterator[StageStats]:
        return iter(self.stages)

    def __str__(self) -> str:
        head = ("stage", "conc", "in", "out", "fail", "busy s", "starved s", "blocked s", "buffer")
        rows = [head]
        for s in self.stages:
            mark = " *" if s.name == self.bottleneck else ""
            rows.append(
                (
                    s.name + mark,
                    str(s.concurrency),
                    str(s.items_in),
                    str(s.items_out),
                    str(s.failures),
                    f"{s.busy_s:.3f}",
                    f"{s.starved_s:.3f}",
                    f"{s.blocked_s:.3f}",
                    f"{s.buffer_occupancy}/{s.buffer_capacity}",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = [
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in rows
        ]
        lines.append(f"elapsed {self.elapsed_s:.3f} s; bottleneck: {self.bottleneck or '-'} (*)")
        return "\n".join(lines)


def merge(
    name: str,
    concurrency: int,
    executor: str,
    counters: list[WorkerCounters],
    occupancy: int,
    capacity: int,
    *,
    tuning: str = "",
) -> StageStats:
    """Sum one stage's worker counters into a ``StageStats``."""
    return StageStats(
        name=name,
        concurrency=concurrency,
        executor=executor,
        items_in=sum(c.items_in for c in counters),
        items_out=sum(c.items_out for c in counters),
        failures=sum(c.failures for c in counters),
        retries=sum(c.retries for c in counters),
        busy_s=sum(c.busy for c in counters),
        starved_s=sum(c.starved for c in counters),
        blocked_s=sum(c.blocked for c in counters),
        buffer_occupancy=occupancy,
        buffer_capacity=capacity,
        tuning=tuning,
    )


def find_bottleneck(stages: tuple[StageStats, ...]) -> str | None:
    """Name the stage whose workers were busy the longest, per worker.

    Per-worker busy seconds, not the busy share: a stage that ran for a moment
    and finished (a cheap source) can have a share near 1 and limit nothing.
    """
    ran = [s for s in stages if s.busy_s > 0]
    if not ran:
        return None
    return max(ran, key=lambda s: s.busy_s / s.concurrency).name
