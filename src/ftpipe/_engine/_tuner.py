"""The tuner: sizes ``concurrency="auto"`` stages and places ``executor="auto"`` ones, measuring.

::

    one daemon thread per pipeline with a tuned stage ("ftpipe-tuner"):
      every window (>= MIN_WINDOW_S and >= enough items, <= MAX_WINDOW_S):
        the counters every stage keeps ─► per stage: busy share, CPU / busy, items
        pipeline rate = inputs per second of the stage after the last tuned one
        (the first window, the start-up, is not judged)
        a trial pending?  kept if the rate rose by GAIN (or another stage saturated)
        else (_steps): a GIL build's threads at one core ─► the stage using most
              moves off the GIL (interpreter, else process) first;
              the tuned stage busiest (>= BUSY) grows one step (x2; x4-x8 when it
              waits), within max_concurrency, and the usable cores when it computes;
              an undone level is retried when the limit moves (a kept gain) or the
              rate shifts, but not after two undos
        executor="auto", a stage that computes and stopped growing:
              GIL build, its second thread added nothing ─► interpreter, else process
              3.13t, CPU per item rose with threads (contention) ─► process
              tried at the same rate test, kept only if faster

Decisions go to the stage's ``tuning`` note (``stats()``).  Every resize and switch
takes the run's resize lock; the tuner's own state is touched by its thread only.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from time import perf_counter, process_time

from .._runtime import gil_enabled, usable_cores
from ._channel import Stopped
from ._stage import StageRuntime
from ._steps import Steps
from ._tuning import (
    MAX_WINDOW_S,
    MIN_ITEMS,
    MIN_WINDOW_S,
    SATURATED,
    SETTLE_S,
    SHIFT,
    SHIFTED,
    WARM_UP_S,
    Sample,
    Trial,
    Tuned,
    sample,
)

__all__ = ["Tuner"]


class Tuner(Steps):
    """Measure the running stages and resize / move the tuned ones (see the module docstring).

    Args:
        stages: The run's stages.
        stopped: Set when the run stops; the tuner's waits end on it.
        lock: The run's resize lock.
        switch: ``switch(stage, kind_name or None, n)`` moves a stage (see ``_resize``).
        resize: ``resize(stage, n)``.
    """

    def __init__(
        self,
        stages: list[StageRuntime],
        stopped: threading.Event,
        lock: threading.Lock,
        switch: Callable[[StageRuntime, str | None, int], None],
        resize: Callable[[StageRuntime, int], None],
    ) -> None:
        self._stages = stages
        self._stopped = stopped
        self._lock = lock
        self._switch = switch
        self._resize = resize
        self._tuned = [
            Tuned(s) for s in stages if s.config.auto_concurrency or s.config.auto_executor
        ]
        # The rate is read where the last tuned stage's outputs go: the pipeline's rate
        # in steady state (buffers pass back-pressure), in items before any batching.
        # (self._tuned is in stage order: its last is the last tuned stage.)
        after = stages.index(self._tuned[-1].stage) + 1 if self._tuned else len(stages)
        self._gauge = stages[min(after, len(stages) - 1)] if stages else None
        self._cores = usable_cores()
        self._gil = gil_enabled()
        self._process_cores = 0.0  # this process's CPU per second in the last window
        # (perf_counter, stage, executor, size) after each change; the last ones only.
        self.history: deque[tuple[float, str, str, int]] = deque(maxlen=256)
        for t in self._tuned:
            t.stage.tuning = f"auto: starting on {t.stage.executor_name} x{t.stage.workforce.size}"

    # -- the loop ----------------------------------------------------------------------

    def run(self, fail: Callable[[BaseException], None]) -> None:
        """The tuner thread's body: measure, decide, repeat until the run stops or ends.

        A failure (an executor that cannot start, an engine bug) goes to ``fail``,
        which stops the pipeline and raises it in the consumer, as a worker's would.
        """
        try:
            self._loop()
        except Stopped:
            pass  # stopping while a resize started threads
        except BaseException as exc:  # noqa: BLE001 - the consumer must hear of it
            fail(exc)

    def _loop(self) -> None:
        trial: Trial | None = None
        ref: float | None = None  # the rate the current levels were judged at
        shifted = 0
        settle = SETTLE_S
        # The first window holds the start-up: any step would look like a gain on it.
        # It ends once items come out of the last stage (it is not judged).
        if self._stopped.wait(settle) or self._measure(need=1) is None:
            return
        while True:
            if self._stopped.wait(settle) or self._ended():
                return
            if trial is not None and trial.warm_from is not None and not self._warm(trial):
                return
            window = self._measure()
            if window is None:
                return
            rate, samples, seconds = window
            settle = SETTLE_S
            if trial is not None:
                d, share = samples[trial.tuned.stage.index]
                cpu = d.cpu / d.busy if d.busy > 0 else 0.0
                busy = share * trial.tuned.stage.workforce.size
                others = [samples[o.stage.index][1] for o in self._tuned if o is not trial.tuned]
                judged = self._judge(trial, rate, cpu, busy, max(others, default=0) >= SATURATED)
                if judged is None:
                    continue  # it helped once: one more window to confirm it
                now = (trial.tuned.stage.workforce.size, trial.tuned.stage.executor_name)
                kept, ref, trial = now != (trial.size, trial.executor), judged, None
                if not kept:  # the window measured the undone level; else, as they are now:
                    continue  # the next step is chosen from it, no window spent waiting
            if ref is None:
                ref = rate
            moved = abs(rate / ref - 1) > SHIFT if ref > 0 else rate > 0
            if moved:
                shifted += 1
                if shifted >= SHIFTED:  # the workload changed: what failed may help now
                    for t in self._tuned:
                        t.forgive()
                    ref, shifted = rate, 0
            else:
                shifted = 0
            trial = self._next_step(samples, rate, seconds)

    def _warm(self, trial: Trial) -> bool:
        """Wait until a switched stage's new workers put items out; False once stopped."""
        stage, start = trial.tuned.stage, trial.warm_from or 0
        deadline = perf_counter() + WARM_UP_S
        while perf_counter() < deadline and not self._ended():
            if sum(c.items_out for c in list(stage.counters)[start:]) >= stage.workforce.size:
                break
            if self._stopped.wait(SETTLE_S):
                return False
        return not self._stopped.wait(SETTLE_S)

    def _ended(self) -> bool:
        return all(t.stage.outbox.ended() for t in self._tuned)

    def _measure(
        self, need: int = MIN_ITEMS
    ) -> tuple[float, dict[int, tuple[Sample, float]], float] | None:
        """Wait one window; return the pipeline's rate and each stage's deltas, share busy."""
        last = self._gauge
        assert last is not None, "a run has stages"
        before = {s.index: sample(s) for s in self._stages}
        t0, cpu0 = perf_counter(), process_time()
        if self._stopped.wait(MIN_WINDOW_S):
            return None
        while True:
            items = sample(last).items - before[last.index].items
            elapsed = perf_counter() - t0
            if items >= need or elapsed >= MAX_WINDOW_S or self._ended():
                break
            if self._stopped.wait(min(MIN_WINDOW_S, MAX_WINDOW_S - elapsed)):
                return None
        elapsed = perf_counter() - t0
        self._process_cores = (process_time() - cpu0) / elapsed
        out: dict[int, tuple[Sample, float]] = {}
        for s in self._stages:
            now, was = sample(s), before[s.index]
            d = Sample(now.items - was.items, now.busy - was.busy, now.idle - was.idle)
            d.cpu = now.cpu - was.cpu
            total = d.busy + d.idle
            out[s.index] = (d, d.busy / total if total > 0 else 0.0)
        return items / elapsed, out, elapsed
