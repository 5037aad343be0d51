"""Stages that cost next to nothing, run in the consumer's thread instead of their own.

::

    threads (every pipeline starts so) ── the consumer, every WATCH_EVERY outputs ──►
      Watch.cheap(): source + every stage, CPU per item, summed, <= INLINE_MAX and <=
      the wall time per item the threads delivered?  yes ──► the source lends its
      iterator: it stops feeding, every item in flight drains to the consumer
    inline ── Pipeline.__next__ ── Inline.batch(): islice(source) ──► stage 0 ──► ... ──►
      the consumer's buffer; each stage's calls under its own worker_info(), item seeds,
      statistics, error note
    back to threads (for good) ── resize(), or a batch slower than SLOW per item:
      a new run from the next item on (``advanced``), nothing in flight, nothing lost

A call that costs a microsecond is cheaper than any hand-off between threads: a
pipeline of such stages spends its time in locks and wake-ups, and on a busy
machine (CPU hogs beside it, a free-threaded build whose locks yield the core) its
threads collapse.  In the consumer's thread the same calls are a plain loop.

Only a pipeline whose every stage is an ordered plain function on the engine's
threads at a fixed concurrency of 1, with no retries, no ``on_error="skip"`` and
no initializer, fed by a plain (not async, not self-restoring) iterable, at
normal priority without pinned CPUs and ``inline=True`` (the default), is
watched: then every input makes exactly one output and nothing is in flight
between two batches, so a checkpoint is a position (``advanced``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import islice
from time import perf_counter, thread_time
from typing import Any

from ._calls import call_each
from ._config import FnKind, PipelineConfig, StageKind
from ._context import WorkerInfo, _local, positioned
from ._resumable import is_sequence, is_stateful_source
from ._run import Run
from ._stage import as_stage_error
from ._state import Tail
from ._stats import WorkerCounters

__all__ = [
    "INLINE_MAX",
    "SLOW",
    "WATCH_EVERY",
    "Inline",
    "Watch",
    "advanced",
    "can_inline",
    "continued",
]

# Source and stages together, CPU seconds per item: below this a pipeline runs inline.
INLINE_MAX = 2e-6
# Inline calls slower than this per item send the pipeline back to threads: wall
# time in every batch of a window (WINDOW_ITEMS items or WINDOW_S seconds, whichever
# comes first: calls that wait), or CPU time over two windows in a row (calls that
# compute).  Not wall time over a window: on a busy machine the consumer's thread
# is preempted mid-batch, which says nothing of the calls; nor one window's CPU: a
# garbage collection falls in one.
SLOW = 20e-6
WINDOW_ITEMS = 256
WINDOW_S = 10e-3
# Outputs between two looks at the counters (and before the first).
WATCH_EVERY = 256


def can_inline(config: PipelineConfig) -> bool:
    """Whether ``config`` may run in the consumer's thread once its calls prove cheap."""
    if not config.inline or not config.scheduling.is_normal or not config.stages:
        return False
    if is_stateful_source(config.source) or not isinstance(config.source, Iterable):
        return False
    return all(
        s.kind is StageKind.PIPE
        and s.fn_kind is FnKind.FUNCTION
        and s.executor is None
        and s.concurrency == 1
        and not s.auto_concurrency
        and not s.auto_executor
        and s.ordered
        and s.on_error == "raise"
        and s.retries == 0
        and s.initializer is None
        and s.resume_drop == 0
        for s in config.stages
    )


def advanced(config: PipelineConfig, k: int, source: Any = None) -> PipelineConfig:
    """``config`` after ``k`` more inputs went through every stage, nothing in flight.

    Every stage makes one output per input (``can_inline``), so each stage, the
    source and the outputs delivered all moved on by ``k``.  ``source``: what
    the new run reads (None: unchanged, for a checkpoint).
    """
    return replace(
        config,
        source=config.source if source is None else source,
        stages=tuple(replace(s, position_offset=s.position_offset + k) for s in config.stages),
        start=config.start + k,
        source_offset=config.source_offset + k,
    )


class Rest:
    """The items an iterator has left, as an iterable for a new run's source."""

    def __init__(self, iterator: Iterator[Any]) -> None:
        self.iterator = iterator

    def __iter__(self) -> Iterator[Any]:
        return self.iterator


class Watch:
    """The consumer's look at a threaded run: are its calls cheaper than its hand-offs?"""

    def __init__(self, run: Run, fetched: int) -> None:
        self._run = run
        self.next_at = fetched + WATCH_EVERY
        self._last = self._totals(fetched)

    def _totals(self, fetched: int) -> tuple[float, int, list[tuple[float, float, int]]]:
        run = self._run
        parts = [
            (
                sum(c.cpu for c in s.counters),
                sum(c.busy for c in s.counters),
                sum(c.items_in for c in s.counters),
            )
            for s in run.stages
        ]
        source = run.source.counters
        parts.append(
            (0.0, 0.0, 0) if source is None else (source.cpu, source.busy, source.items_out)
        )
        return perf_counter(), fetched, parts

    def cheap(self, fetched: int) -> float | None:
        """CPU seconds per item of the source and every stage, if the run should go inline.

        Cheap: at most INLINE_MAX and less than the wall time per item the threads
        took, and calls that do not wait either (their wall time at most SLOW per
        item, as a source reading files can cost little CPU and much time).
        """
        self.next_at = fetched + WATCH_EVERY
        now = self._totals(fetched)
        last, self._last = self._last, now
        if any(s.workforce.size != 1 for s in self._run.stages):
            return None
        cpu = busy = 0.0
        for (cpu1, busy1, items1), (cpu0, busy0, items0) in zip(now[2], last[2], strict=True):
            items = items1 - items0
            if items < WATCH_EVERY // 4:
                return None  # too few to tell (or a stage that barely ran)
            cpu += (cpu1 - cpu0) / items
            busy += (busy1 - busy0) / items
        wall = (now[0] - last[0]) / max(1, now[1] - last[1])
        return cpu if cpu <= min(INLINE_MAX, wall) and busy <= SLOW else None


class Inline:
    """A drained run's stages, called by the consumer's thread, one batch at a time.

    Only the thread holding the pipeline's consumer lock calls ``batch``.
    """

    def __init__(self, run: Run, iterator: Iterator[Any], drawn: int, cost: float) -> None:
        """``drawn``: the inputs ``run`` took from its source; ``cost``: the CPU
        seconds per item the watch measured."""
        self.run = run
        self.config = run.config
        self.iterator = iterator
        self.drawn = drawn  # inputs this run took from its source, threads and inline
        # Calls proved cheap on threads: whole batches from the start, as a thread
        # stage's grown batches; a window of slow calls ends inline for good anyway.
        self._take = max(1, self.config.sink_buffer_size)
        stages = self.config.stages
        for stage in run.stages:
            stage.tuning = (
                f"inline: run in the consumer's thread ({cost * 1e6:.2f} us of CPU per "
                "item, source and stages)"
            )
        self._calls: list[tuple[Callable[[Any], Any], WorkerInfo, bytes | None, int, str]] = [
            (fn, WorkerInfo(s.name, 0, 1), s.seed_key, s.position_offset, s.name)
            for s in stages
            if (fn := s.fn) is not None
        ]
        self.counters = [stage.new_counters() for stage in run.stages]
        source = run.source.counters
        self._source = source if source is not None else WorkerCounters()
        self.ended = False  # the source has no more items
        self._window = (0, float("inf"), 0.0, 0.0)  # items, fastest batch per item, CPU, wall
        self._slow_before = False  # the last window's CPU per item was over SLOW

    def batch(self) -> tuple[list[Any], BaseException | None, float]:
        """The next batch's outputs, the error that ends the pipeline after them, and
        what the calls cost per input when a window ends (else 0.0): the fastest
        batch's wall time, or the window's CPU time if the one before was over SLOW."""
        t0, c0 = perf_counter(), thread_time()
        items: list[Any] = []
        error: BaseException | None = None
        take = self._take
        try:
            items.extend(islice(self.iterator, take))  # keeps what came before an error
        except Exception as exc:  # noqa: BLE001 - after its items (Ctrl-C: at once)
            error = as_stage_error(exc)
            error.add_note("ftpipe: raised by the source")
        if len(items) < take:
            self.ended = True
        t1 = perf_counter()
        source = self._source
        source.busy += t1 - t0
        source.cpu += t1 - t0  # one thread, no hand-offs: wall time is CPU time here
        source.items_out += len(items)
        seq0 = self.drawn
        self.drawn += len(items)
        count = len(items)
        local = _local
        saved = (getattr(local, "info", None), getattr(local, "key", None))
        try:
            for (fn, info, key, offset, name), counters in zip(
                self._calls, self.counters, strict=True
            ):
                local.info, local.key, local.pos = info, key, None
                out: list[Any] = []
                failed: list[tuple[int, BaseException]] = []

                def stop(i: int, exc: BaseException, failed: list[Any] = failed) -> None:
                    failed.append((i, exc))
                    raise _Cut

                t2 = perf_counter()
                try:
                    call_each(fn, positioned(items, seq0 + offset, key), out, stop)
                except _Cut:
                    pass
                busy = perf_counter() - t2
                counters.busy += busy
                counters.cpu += busy
                counters.items_in += len(items)
                counters.items_out += len(out)
                if failed:
                    i, failure = failed[0]
                    counters.failures += 1
                    if not isinstance(failure, Exception):
                        raise failure  # Ctrl-C in a call: the consumer's own interrupt
                    error = as_stage_error(failure)
                    error.add_note(f"ftpipe: raised in stage {name!r} on input #{seq0 + i}")
                items = out
        finally:
            local.info, local.key = saved
            local.pos = None
        spent = perf_counter() - t0
        calls, fastest, cpu, wall = self._window
        calls, cpu, wall = calls + count, cpu + thread_time() - c0, wall + spent
        fastest = min(fastest, spent / max(1, count))
        if calls < WINDOW_ITEMS and wall < WINDOW_S:
            self._window = (calls, fastest, cpu, wall)
            return items, error, 0.0
        self._window = (0, float("inf"), 0.0, 0.0)
        computes = cpu / max(1, calls)
        twice, self._slow_before = self._slow_before, computes > SLOW
        return items, error, max(fastest, computes if twice else 0.0)


def continued(run: Run, done: int, iterator: Iterator[Any], sizes: dict[str, int], why: str) -> Run:
    """A new run on threads going on after input ``done`` of ``run``, nothing in flight.

    It reads the rest of the source (a sequence from item ``done`` on, so it can
    still be checkpointed; else what is left of ``iterator``), its stages at
    ``sizes`` (by name; the others as built), counting on from ``run``'s
    statistics, item seeds and checkpoint positions.  Not started.
    """
    config = run.config
    source = Tail(config.source, done) if is_sequence(config.source) else Rest(iterator)
    moved = advanced(config, done, source)
    stages = tuple(replace(s, concurrency=sizes.get(s.name, s.concurrency)) for s in moved.stages)
    new = Run(replace(moved, stages=stages))
    new.carry_over(run)
    for stage in new.stages:
        stage.tuning = f"back on threads: {why}"
    return new


class _Cut(Exception):
    """Ends a stage's calls at its first failure (``call_each``)."""
