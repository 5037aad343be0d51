"""The tuner's decisions: which stage limits, the step it takes, and whether a step paid off.

::

    a window's counters ─► Steps._next_step
      GIL build, the process at one core (GIL_BOUND) ─► _gil_holder ─► _move (off the GIL)
      else the busiest tuned stage (>= BUSY) ─► _grow (x2, x4-x8 when it waits)
                                           └► _move (executor="auto", cannot grow usefully)
    the next windows ─► Steps._judge: kept (GAIN, STRONG, EVEN) or undone and remembered

``Tuner`` (``_tuner``) runs the loop and measures; the policy's constants are in
``_tuning``.  Only the tuner's thread calls these.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from time import perf_counter

from .._runtime import is_free_threaded
from ._config import AUTO_MAX_CONCURRENCY
from ._executor_kinds import executor_kind
from ._stage import StageRuntime
from ._tuning import (
    BUSY,
    CONTENTION,
    EVEN,
    GAIN,
    GIL_BOUND,
    LINEAR_GAIN,
    SATURATED,
    SERIAL,
    STRONG,
    USES_CPU,
    WAITED,
    Sample,
    Trial,
    Tuned,
    classify,
    note,
)

__all__ = ["Steps"]


class Steps:
    """The decisions ``Tuner`` takes each window (its base: the loop lives there)."""

    _tuned: list[Tuned]
    _lock: threading.Lock
    _switch: Callable[[StageRuntime, str | None, int], None]
    _resize: Callable[[StageRuntime, int], None]
    _cores: int
    _gil: bool
    _process_cores: float  # this process's CPU per second in the last window
    history: deque[tuple[float, str, str, int]]

    def _judge(
        self, trial: Trial, rate: float, cpu: float, busy: float, other_limits: bool = False
    ) -> float | None:
        """Keep the trial's step if the rate rose by GAIN, else undo it; return the new ref.

        On two windows' mean rate (None: one more window), as one window on a busy
        machine can rise or fall by chance (even by half), unless it rose by STRONG.  The
        busy workers must rise by GAIN too (else the new ones only waited: for input,
        room, or the GIL), and a thread stage using CPU must keep its CPU share (SERIAL).
        """
        t, stage = trial.tuned, trial.tuned.stage
        moved = trial.executor != stage.executor_name  # a move, not a resize
        base = trial.base_cpu
        cpu_ok = base is None or base < USES_CPU or cpu >= SERIAL * base
        cpu_ok = cpu_ok and (moved or busy >= trial.base_busy * GAIN)
        trial.rates.append(rate)
        # A big step (x4, x8) must pay off at a quarter of its size: noise never does.
        # A x2 step (or a move) needs GAIN: an extra worker that only waits costs little.
        step = stage.workforce.size / trial.size if trial.size else 2.0
        big = not moved and step > 2
        need = 1 + (step - 1) / 4 if big else GAIN
        # One window decides only a gain noise never gives (STRONG), a step held while
        # another stage limits, or workers that serialized (cpu_ok); else a second one,
        # as one window can fall by chance as far as it can rise.
        held = other_limits and rate >= trial.base * EVEN
        sure = rate >= trial.base * max(need, STRONG) or held
        if len(trial.rates) == 1 and cpu_ok and not sure:
            return None
        rate = sum(trial.rates) / len(trial.rates)
        if rate >= trial.base * need and cpu_ok:
            if moved:
                t.done_switching = True  # moved for good
            gain = rate / trial.base if trial.base > 0 else float("inf")
            t.last_gain = 0.0 if moved else gain
            for other in self._tuned:  # the limit moved: what it stopped may help now,
                if other is not t:  # and what paid off before it moved may not any more
                    other.forgive()
                    other.last_gain = 0.0
            stage.tuning = note(t, f"the last step gave x{gain:.2f}, {rate:.0f} items/s")
            return rate
        if other_limits and rate >= trial.base * EVEN:
            # Another stage saturated: keep the step (within its cap) and grow that one
            # next, so both gain together instead of each step alone looking useless.
            if moved:
                t.done_switching = True
            stage.tuning = note(t, "kept while another stage limits")
            return rate
        tried = (stage.executor_name, stage.workforce.size)
        t.fail(tried)
        back = None if trial.executor == "thread" else trial.executor
        with self._lock:
            if moved:
                self._switch(stage, back, trial.size)  # tried again only once forgiven
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
        holder = self._gil_holder(samples, seconds)
        if holder is not None:
            step = self._move(holder, samples, rate, gil_bound=True)
            if step is not None:
                return step
        candidates = []
        for t in self._tuned:
            d, busy = samples[t.stage.index]
            if d.items == 0 or t.stage.outbox.ended():
                continue
            classify(t, d)
            if busy >= BUSY:
                candidates.append((busy, t))
        for rank, (share, t) in enumerate(sorted(candidates, key=lambda c: -c[0])):
            if rank and share < SATURATED:
                break  # the busiest cannot step, and this one has room: it limits nothing
            d, _ = samples[t.stage.index]
            threads = t.stage.executor is None and d.busy > 0
            cpu = d.cpu / d.busy if threads else None
            busy = samples[t.stage.index][1] * t.stage.workforce.size
            step = self._grow(t, rate, cpu, busy) or self._move(t, samples, rate)
            if step is not None:
                return step
        return None

    def _gil_holder(self, samples: dict[int, tuple[Sample, float]], seconds: float) -> Tuned | None:
        """On a GIL build whose threads use one core between them: the stage using most.

        The GIL lets one thread run Python at a time, so a process at about one core
        is at its ceiling: the executor="auto" thread stage spending most of that core
        (half of it at least) is tried off the GIL first, whatever limits on paper.
        """
        if not self._gil or self._process_cores < GIL_BOUND or seconds <= 0:
            return None
        movable = [
            t
            for t in self._tuned
            if t.stage.config.auto_executor and t.stage.executor is None and not t.done_switching
        ]
        top = max(movable, key=lambda t: samples[t.stage.index][0].cpu, default=None)
        if top is None or samples[top.stage.index][0].cpu / seconds < GIL_BOUND / 2:
            return None
        classify(top, samples[top.stage.index][0])
        return top

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
        # while the last paid off in full (64 threads in three steps), and first when
        # it hardly uses CPU at all.  Computing: x2.
        factor = 2
        if not t.computes:
            idle_cpu = size == 1 and t.cpu_share < USES_CPU
            factor = 8 if t.last_gain >= LINEAR_GAIN * 2 or idle_cpu else 4
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
        self,
        t: Tuned,
        samples: dict[int, tuple[Sample, float]],
        rate: float,
        gil_bound: bool = False,
    ) -> Trial | None:
        """An executor="auto" stage that computes and cannot grow usefully on threads.

        ``gil_bound``: the process's threads use one core between them, this stage most.
        """
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
            if size == 1 and ("thread", 2) not in t.failed and not gil_bound:
                return None
            kinds, n, why = ("interpreter", "process"), max(2, size), "holds the GIL"
            if gil_bound:
                why = f"holds the GIL: {self._process_cores:.2f} cores in use"
        elif is_free_threaded() and size >= 2 and t.cpu_per_item_1 and d.items:
            per_item = d.cpu / d.items
            if per_item < CONTENTION * t.cpu_per_item_1:
                return None
            kinds, n = ("process",), size
            why = f"CPU per item x{per_item / t.cpu_per_item_1:.2f} with {size} threads"
        else:
            return None
        runnable = False
        for name in kinds:
            kind = executor_kind(name)
            if kind is None:
                continue
            if (name, n) in t.failed:
                runnable = True  # it ran there and was undone: again once the limit moves
                continue
            try:
                assert stage.config.fn is not None
                kind.check(stage.config.fn, stage.config.name)
            except (TypeError, ValueError):
                continue  # not importable / picklable there: the next kind
            runnable = True
            trial = Trial(t, "thread", size, rate, warm_from=len(stage.counters))
            with self._lock:
                self._switch(stage, name, n)
            self._record(stage)
            stage.tuning = f"auto: trying {name} x{n} ({why} on threads)"
            return trial
        if not runnable:
            t.done_switching = True
            stage.tuning += f"; {why}, but no other executor can run it"
        return None

    def _record(self, stage: StageRuntime) -> None:
        now, name = perf_counter(), stage.config.name
        self.history.append((now, name, stage.executor_name, stage.workforce.size))
