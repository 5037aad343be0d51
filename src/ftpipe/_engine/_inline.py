"""Stages that cost next to nothing, run in the consumer's thread instead of their own.

::

    start() ── can_inline? ── no threads: Pipeline.__next__ ── Inline.batch():
      islice(source) ──► stage 0 ──► ... ──► the consumer's buffer; each stage's calls
      under its own worker_info(), item seeds, statistics and error note
    the first PROBE_ITEMS items: batches of 1, 2, 4, ...  two slow batches in a row,
      or more than INLINE_MAX of CPU per item over the probe ──► threads
    then: a window of slow calls (wall time in every batch, or CPU time two windows
      running), or resize() ──► threads
    threads, for good ── continued(): a new run from the next item on, nothing in
      flight, nothing lost (``advanced``)

A call that costs a microsecond is cheaper than any hand-off between threads: a
pipeline of such stages spends its time in locks and wake-ups, and on a busy
machine (CPU hogs beside it, a free-threaded build whose locks yield the core) its
threads collapse, starting them included.  In the consumer's thread the same calls
are a plain loop.  A pipeline whose calls prove slow pays two of them here, then
gets its threads.

Only a pipeline whose every stage is an ordered plain function on the engine's
threads at a fixed concurrency of 1, with no retries, no ``on_error="skip"`` and
no initializer, fed by a plain (not async, not self-restoring) iterable, at
normal priority without pinned CPUs and ``inline=True`` (the default), starts so:
then every input makes exactly one output and nothing is in flight between two
batches, so a checkpoint is a position (``advanced``).
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
from ._stage import SOURCE_NOTE, as_stage_error, raised_in
from ._state import Tail
from ._stats import WorkerCounters

__all__ = ["INLINE_MAX", "PROBE_ITEMS", "SLOW", "Inline", "advanced", "can_inline", "continued"]

# Source and stages together, CPU seconds per item over the probe: above, threads.
INLINE_MAX = 2e-6
# The items the probe takes before the calls are known cheap (in batches 1, 2, 4, ...).
PROBE_ITEMS = 256
# Inline calls slower than this per item send the pipeline to threads: two batches
# in a row while probing; then wall time in every batch of a window (WINDOW_ITEMS
# items or WINDOW_S seconds, whichever comes first: calls that wait), or CPU time
# over two windows in a row (calls that compute).  Not wall time over a window: on
# a busy machine the consumer's thread is preempted mid-batch, which says nothing
# of the calls; nor one window's CPU: a garbage collection falls in one.
SLOW = 20e-6
WINDOW_ITEMS = 256
WINDOW_S = 10e-3


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


class Inline:
    """A run's stages, called by the consumer's thread one batch at a time; the run
    starts no thread.  Only the thread holding the pipeline's consumer lock calls it.
    """

    def __init__(self, run: Run) -> None:
        self.run = run
        self.config = run.config
        self._iterator: Iterator[Any] | None = None  # iter(source), at the first batch
        self.drawn = 0  # inputs taken from the source
        self._most = max(1, self.config.sink_buffer_size)
        self._take = 1  # doubles while probing, as a thread stage's batches grow
        self._probed = (0, 0.0)  # items and CPU seconds so far, while probing
        self._slow_batches = 0  # in a row, while probing
        self._calls: list[tuple[Callable[[Any], Any], WorkerInfo, bytes | None, int, str]] = [
            (fn, WorkerInfo(s.name, 0, 1), s.seed_key, s.position_offset, s.name)
            for s in self.config.stages
            if (fn := s.fn) is not None
        ]
        self.counters = [stage.new_counters() for stage in run.stages]
        self._source = run.source.counters = WorkerCounters()  # the source's stats line
        self.ended = False  # the source has no more items
        self._window = (0, float("inf"), 0.0, 0.0)  # items, fastest batch per item, CPU, wall
        self._slow_before = False  # the last window's CPU per item was over SLOW

    @property
    def iterator(self) -> Iterator[Any]:
        """The source's iterator (what a run on threads goes on reading)."""
        if self._iterator is None:
            self._iterator = iter(self.config.source)  # type: ignore[arg-type]
        return self._iterator

    def batch(self) -> tuple[list[Any], BaseException | None, str | None]:
        """The next batch's outputs, the error that ends the pipeline after them, and
        why the rest should go to threads (None: it stays here)."""
        t0, c0 = perf_counter(), thread_time()
        items: list[Any] = []
        error: BaseException | None = None
        take = self._take
        try:  # on an error, extend() keeps what came before it
            items.extend(islice(self.iterator, take))
        except Exception as exc:  # noqa: BLE001 - after its items (Ctrl-C: at once)
            error = as_stage_error(exc)
            error.add_note(SOURCE_NOTE)
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
                    error.add_note(raised_in(name, seq0 + i))
                items = out
        finally:
            local.info, local.key = saved
            local.pos = None
        return items, error, self._verdict(count, perf_counter() - t0, thread_time() - c0)

    def _verdict(self, count: int, spent: float, cpu: float) -> str | None:
        """Why the rest should go to threads, after a batch of ``count`` inputs."""
        if not count:
            return None
        per_item = spent / count
        items, probe_cpu = self._probed
        if items < PROBE_ITEMS:
            self._slow_batches = self._slow_batches + 1 if per_item > SLOW else 0
            if self._slow_batches >= 2:
                return f"calls took {per_item * 1e6:.0f} us per item"
            self._take = 1 if per_item > SLOW else min(self._most, 2 * self._take)
            items, probe_cpu = items + count, probe_cpu + cpu
            self._probed = (items, probe_cpu)
            if items >= PROBE_ITEMS:
                cost = probe_cpu / items
                if cost > INLINE_MAX:
                    return f"calls cost {cost * 1e6:.1f} us of CPU per item"
                self._take = self._most
                for stage in self.run.stages:
                    stage.tuning = (
                        f"inline: run in the consumer's thread ({cost * 1e6:.2f} us of "
                        "CPU per item, source and stages)"
                    )
            return None
        calls, fastest, window_cpu, wall = self._window
        calls, window_cpu, wall = calls + count, window_cpu + cpu, wall + spent
        fastest = min(fastest, per_item)
        if calls < WINDOW_ITEMS and wall < WINDOW_S:
            self._window = (calls, fastest, window_cpu, wall)
            return None
        self._window = (0, float("inf"), 0.0, 0.0)
        computes = window_cpu / calls
        twice, self._slow_before = self._slow_before, computes > SLOW
        if fastest > SLOW:
            return f"calls took {fastest * 1e6:.0f} us per item"
        if twice and computes > SLOW:
            return f"calls cost {computes * 1e6:.0f} us of CPU per item"
        return None


def continued(run: Run, done: int, iterator: Iterator[Any], sizes: dict[str, int], why: str) -> Run:
    """A new run on threads going on after input ``done`` of ``run``, nothing in flight.

    It reads the rest of the source (a sequence from item ``done`` on, so it can
    still be checkpointed; else what is left of ``iterator``), its stages at
    ``sizes`` (by name; the others as built), counting on from ``run``'s
    statistics, item seeds, checkpoint positions and the input numbers of error
    notes.  Not started.
    """
    config = run.config
    source = Tail(config.source, done) if is_sequence(config.source) else Rest(iterator)
    moved = advanced(config, done, source)
    stages = tuple(
        replace(s, concurrency=sizes.get(s.name, s.concurrency), note_offset=s.note_offset + done)
        for s in moved.stages
    )
    new = Run(replace(moved, stages=stages))
    new.carry_over(run)
    for stage in new.stages:
        stage.tuning = f"back on threads: {why}"
    return new


class _Cut(Exception):
    """Ends a stage's calls at its first failure (``call_each``)."""
