"""The tuner: sizes ``concurrency="auto"`` stages and places ``executor="auto"`` ones, measuring.

::

    one daemon thread per pipeline with a tuned stage ("ftpipe-tuner"):
      every window (>= MIN_WINDOW_S and >= enough items, <= MAX_WINDOW_S):
        the counters every stage keeps ─► per stage: busy share, CPU / busy, items
        pipeline rate = inputs the last stage took per second
        (the first window, the start-up, is not judged)
        a trial pending?  kept if the rate rose by GAIN (or another stage saturated)
        else: the tuned stage busiest (>= BUSY) grows one step (x2; x4-x8 when it
              waits), within max_concurrency, and the usable cores when it computes;
              an undone level is retried when the rate shifts, but not after two undos
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
from time import perf_counter

from .._runtime import gil_enabled, is_free_threaded, usable_cores
from ._channel import Stopped
from ._config import AUTO_MAX_CONCURRENCY
from ._executor_kinds import executor_kind
from ._stage import StageRuntime
from ._tuning import (
    BUSY,
    CONTENTION,
    EVEN,
    GAIN,
    LINEAR_GAIN,
    MAX_WINDOW_S,
    MIN_ITEMS,
    MIN_WINDOW_S,
    SATURATED,
    SERIAL,
    SETTLE_S,
    SHIFT,
    SHIFTED,
    STRONG,
    USES_CPU,
    WAITED,
    WARM_UP_S,
    Sample,
    Trial,
    Tuned,
    classify,
    note,
    sample,
)

__all__ = ["Tuner"]


class Tuner:
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
        self._cores = usable_cores()
        self._gil = gil_enabled()
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
        if self._stopped.wait(settle) or self._measure() is None:
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

    def _measure(self) -> tuple[float, dict[int, tuple[Sample, float]], float] | None:
        """Wait one window; return the pipeline's rate and each stage's deltas, share busy."""
        last = self._stages[-1]
        need = MIN_ITEMS
        before = {s.index: sample(s) for s in self._stages}
        t0 = perf_counter()
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
        out: dict[int, tuple[Sample, float]] = {}
        for s in self._stages:
            now, was = sample(s), before[s.index]
            d = Sample(now.items - was.items, now.busy - was.busy, now.idle - was.idle)
            d.cpu = now.cpu - was.cpu
            total = d.busy + d.idle
            out[s.index] = (d, d.busy / total if total > 0 else 0.0)
        return items / elapsed, out, elapsed

    # -- decisions ---------------------------------------------------------------------

    def _judge(
        self, trial: Trial, rate: float, cpu: float, busy: float, other_limits: bool = False
    ) -> float | None:
        """Keep the trial's step if the rate rose by GAIN, else undo it; return the new ref.

        On two windows' mean rate (None: the first looked hopeful), as one window on a
        busy machine can rise by chance (even by half), unless it rose by STRONG.  The
        busy workers must rise by GAIN too (else the new ones only waited: for input,
        room, or the GIL), and a thread stage using CPU must keep its CPU share (SERIAL).
        """
        t, stage = trial.tuned, trial.tuned.stage
        base = trial.base_cpu
        cpu_ok = base is None or base < USES_CPU or cpu >= SERIAL * base
        cpu_ok = cpu_ok and (
            trial.executor != stage.executor_name or busy >= trial.base_busy * GAIN
        )
        trial.rates.append(rate)
        # A big step (x4, x8) must pay off at a quarter of its size: noise never does.
        step = stage.workforce.size / trial.size if trial.size else 2.0
        need = max(GAIN, 1 + (step - 1) / 4) if trial.executor == stage.executor_name else GAIN
        # One window confirms only a gain noise never gives (STRONG); else a second one.
        sure = rate >= trial.base * max(need, STRONG)
        if len(trial.rates) == 1 and rate >= trial.base and cpu_ok and not sure:
            return None
        rate = sum(trial.rates) / len(trial.rates)
        if rate >= trial.base * need and cpu_ok:
            if trial.executor != stage.executor_name:
                t.done_switching = True  # moved for good
            gain = rate / trial.base if trial.base > 0 else float("inf")
            t.last_gain = gain if trial.executor == stage.executor_name else 0.0
            stage.tuning = note(t, f"the last step gave x{gain:.2f}, {rate:.0f} items/s")
            return rate
        if other_limits and trial.executor == stage.executor_name and rate >= trial.base * EVEN:
            # Another stage saturated: keep the step (within its cap) and grow that one
            # next, so both gain together instead of each step alone looking useless.
            stage.tuning = note(t, "kept while another stage limits")
            return rate
        tried = (stage.executor_name, stage.workforce.size)
        t.fail(tried)
        back = None if trial.executor == "thread" else trial.executor
        with self._lock:
            if trial.executor != stage.executor_name:
                t.done_switching = True
                self._switch(stage, back, trial.size)
            else:
                self._resize(stage, trial.size)
        self._record(stage)
        gave = f"{tried[0]} x{tried[1]} gave x{rate / trial.base if trial.base else 0:.2f}"
        why = f"{'' if cpu_ok else WAITED}, under the x{need:.2f} needed, so it was undone"
        stage.tuning = note(t, gave + why)
        return trial.base

    def _next_step(
        self, samples: dict[int, tuple[Sample, float]], rate: float, seconds: float
    ) -> Trial | None:
        """Start one step on the stage limiting throughput, if any helps."""
        candidates = []
        for t in self._tuned:
            d, busy = samples[t.stage.index]
            if d.items == 0 or t.stage.outbox.ended():
                continue
            classify(t, d)
            if busy >= BUSY:
                candidates.append((busy, t))
        for _, t in sorted(candidates, key=lambda c: -c[0]):
            d, _ = samples[t.stage.index]
            threads = t.stage.executor is None and d.busy > 0
            cpu = d.cpu / d.busy if threads else None
            busy = samples[t.stage.index][1] * t.stage.workforce.size
            step = self._grow(t, rate, cpu, busy) or self._move(t, samples, rate)
            if step is not None:
                return step
        return None

    def _grow(self, t: Tuned, rate: float, cpu: float | None, busy: float) -> Trial | None:
        stage, cfg = t.stage, t.stage.config
        if not cfg.auto_concurrency:
            return None
        size = stage.workforce.size
        cap = cfg.max_concurrency or AUTO_MAX_CONCURRENCY
        if t.computes:
            others = sum(o.stage.workforce.size for o in self._tuned if o is not t and o.computes)
            cap = min(cap, max(1, self._cores - others))
        # A waiting stage costs little per thread and often wants many: x4 steps, x8
        # while the last paid off in full (64 threads in three steps).  Computing: x2.
        factor = 2
        if not t.computes:
            factor = 8 if t.last_gain >= LINEAR_GAIN * 2 else 4
        step = min(cap, factor * size)
        if factor > 2 and (stage.executor_name, step) in t.failed:
            step = min(cap, 2 * size)  # the big step did not help: a normal one may
        if step <= size or (stage.executor_name, step) in t.failed:
            return None
        trial = Trial(t, stage.executor_name, size, rate, cpu, busy)
        with self._lock:
            self._resize(stage, step)
        self._record(stage)
        stage.tuning = f"auto: trying {stage.executor_name} x{step} (was x{size})"
        return trial

    def _move(
        self, t: Tuned, samples: dict[int, tuple[Sample, float]], rate: float
    ) -> Trial | None:
        """An executor="auto" stage that computes and cannot grow usefully on threads."""
        stage = t.stage
        if (
            not stage.config.auto_executor
            or t.done_switching
            or stage.executor is not None
            or not t.computes
            or self._cores < 2
        ):
            return None
        d, _ = samples[stage.index]
        size = stage.workforce.size
        kinds: tuple[str, ...]
        if self._gil:
            # Holds the GIL: computes, and its second thread added nothing (or
            # threads stopped helping at the CPU budget: try real parallelism).
            if size == 1 and ("thread", 2) not in t.failed:
                return None
            kinds, n, why = ("interpreter", "process"), max(2, size), "holds the GIL"
        elif is_free_threaded() and size >= 2 and t.cpu_per_item_1 and d.items:
            per_item = d.cpu / d.items
            if per_item < CONTENTION * t.cpu_per_item_1:
                return None
            kinds, n = ("process",), size
            why = f"CPU per item x{per_item / t.cpu_per_item_1:.2f} with {size} threads"
        else:
            return None
        for name in kinds:
            kind = executor_kind(name)
            if kind is None or (name, n) in t.failed:
                continue
            try:
                assert stage.config.fn is not None
                kind.check(stage.config.fn, stage.config.name)
            except (TypeError, ValueError):
                continue  # not importable / picklable there: the next kind
            trial = Trial(t, "thread", size, rate, warm_from=len(stage.counters))
            with self._lock:
                self._switch(stage, name, n)
            self._record(stage)
            stage.tuning = f"auto: trying {name} x{n} ({why} on threads)"
            return trial
        t.done_switching = True
        stage.tuning += f"; {why}, but no other executor can run it"
        return None

    def _record(self, stage: StageRuntime) -> None:
        now, name = perf_counter(), stage.config.name
        self.history.append((now, name, stage.executor_name, stage.workforce.size))
