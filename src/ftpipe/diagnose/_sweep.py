"""Run one function at rising concurrency on cached inputs and measure it.

Used inside each probe subprocess (``_probe``) and, for functions that cannot be
addressed by module and name, directly in the calling process.

    for round in rounds:                 # interleaved, so a noisy moment hits every level
        for c in levels (up, then down): # c plain threads, released together by a barrier,
            measure(c)                   # each cycling through the inputs from its own offset
    point(c) = medians over the quiet rounds: rounds where the workers did not wait for a
               CPU (run-queue time from /proc/thread-self/schedstat) beyond what their own
               number past the core count explains

Each worker keeps its own cursor and counter and only reads a local deadline, so
the harness adds no shared object of its own for the threads to contend on.
"""

from __future__ import annotations

import functools
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .._engine._calls import caller
from .._engine._config import FnKind, classify_fn
from .._engine._context import enter_probe, leave_chunk, set_position
from .._runtime import usable_cores
from ._records import Point

__all__ = [
    "PROGRESS",
    "CallFailed",
    "SweepSettings",
    "default_levels",
    "make_caller",
    "settings_for",
    "sweep",
]

Caller = Callable[[], tuple[Callable[[Any], Any], Callable[[], None]]]

PROGRESS = "ftpipe-progress: "  # prefix of the progress lines a probe writes to stderr

# Rounds where the workers waited this many cores' worth for a CPU (beyond what their own
# number past the core count explains) are re-measured; without schedstat, rounds where
# other processes used this many cores.
_STARVED = 0.25
_NOISY_NEIGHBOUR = 0.5


@dataclass(frozen=True)
class SweepSettings:
    """How long and how often to measure.

    Attributes:
        levels: Concurrencies to try, rising.
        window_s: Target seconds per measurement (stretched for slow calls).
        min_rounds: Quiet rounds wanted before stopping.
        max_rounds: Rounds after which the figures are reported as they are.
        budget_s: Stop starting new rounds after this many seconds.
        tolerance: Relative spread of throughput over rounds considered stable.
    """

    levels: tuple[int, ...]
    window_s: float = 0.35
    min_rounds: int = 3
    max_rounds: int = 7
    budget_s: float = 14.0
    tolerance: float = 0.12

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for a probe's spec."""
        return {**asdict(self), "levels": list(self.levels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSettings:
        return cls(**{**data, "levels": tuple(data["levels"])})


def default_levels(cores: int | None = None) -> tuple[int, ...]:
    """1, 2, 4, ... up to twice the usable cores (at least 4), to see oversubscription."""
    cores = cores or usable_cores()
    levels, c = [1], 2
    while c <= max(4, 2 * cores):
        levels.append(c)
        c *= 2
    return tuple(levels)


def settings_for(levels: Sequence[int] | None, *, quick: bool = False) -> SweepSettings:
    """Default settings (about 4-12 s per configuration) or quick ones (about 1-3 s)."""
    chosen = tuple(sorted(set(levels))) if levels else default_levels()
    if quick:
        return SweepSettings(chosen, window_s=0.25, min_rounds=3, max_rounds=4, budget_s=3.2)
    return SweepSettings(chosen)


def make_caller(fn: Callable[..., Any]) -> Caller:
    """Return a per-thread factory of ``(call(item), close())`` for any kind of stage function.

    The engine's own ``caller`` (generators collected, async functions on an event loop
    owned by the calling thread), except that a plain function is called as it is: the
    sweep measures the function, not a wrapper around it.
    """
    kind = classify_fn(fn)
    if kind is FnKind.FUNCTION:
        return lambda: (fn, _nothing)
    return functools.partial(caller, fn, kind)


def _nothing() -> None:
    pass


def _cpu_jiffies() -> int | None:
    """Busy jiffies of the cores this process may use, all processes together (Linux only)."""
    try:
        allowed = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        busy = 0
        with open("/proc/stat") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] in allowed:
                    # user nice system idle iowait irq softirq steal: steal counts as taken.
                    v = [int(x) for x in parts[1:9]]
                    busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
        return busy
    except (OSError, AttributeError, ValueError, IndexError):
        return None


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _runqueue_wait_ns() -> int | None:
    """Nanoseconds this thread has spent runnable but not running (Linux schedstat), or None."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class _Sample:
    c: int
    items: int
    wall: float
    cpu: float
    neighbour: float
    starved: float | None  # cores' worth of time the workers waited for a CPU

    def quiet(self, cores: int) -> bool:
        """No one else took the CPU our threads wanted (threads past the core count excepted)."""
        if self.starved is None:
            return self.neighbour < _NOISY_NEIGHBOUR
        return self.starved < _STARVED + max(0, self.c - cores)


class CallFailed(Exception):
    """The measured function raised; carries the original exception and the input's index."""

    def __init__(self, error: BaseException, index: int) -> None:
        super().__init__(f"{type(error).__name__}: {error} (input #{index})")
        self.error = error
        self.index = index


def _measure(caller: Caller, inputs: Sequence[Any], c: int, window: float) -> _Sample:
    """Run ``c`` threads calling through ``inputs`` for ``window`` seconds, started together.

    Raises:
        CallFailed: A call raised, or a worker could not set up its caller.
    """
    n = len(inputs)
    counts = [0] * c
    waits: list[int | None] = [None] * c
    failures: list[CallFailed] = []  # list.append is atomic on every build
    # Whoever cannot reach the start (a worker whose setup failed, the main thread
    # failing to start a worker) aborts it, so no one waits for a start that never comes.
    barrier = threading.Barrier(c + 1)
    deadline_box = [0.0]

    def worker(i: int) -> None:
        k = (i * n) // c
        try:
            call, close = caller()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(CallFailed(exc, k))
            barrier.abort()
            return
        count = 0
        clock, at = time.perf_counter, set_position
        enter_probe()  # item_seed() works (a probe thread: nothing to restore)
        try:
            barrier.wait()
            deadline = deadline_box[0]
            wait0 = _runqueue_wait_ns()
            while True:
                at(k)
                call(inputs[k])
                count += 1
                k = k + 1 if k + 1 < n else 0
                if clock() >= deadline:
                    break
            wait1 = _runqueue_wait_ns()
            if wait0 is not None and wait1 is not None:
                waits[i] = wait1 - wait0
        except threading.BrokenBarrierError:
            pass  # another worker failed before the start: the main thread reports it
        except BaseException as exc:  # noqa: BLE001 - signals reach the main thread only
            failures.append(CallFailed(exc, k))
        finally:
            close()
        counts[i] = count

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"ftpipe-probe-{i}") for i in range(c)
    ]
    started: list[threading.Thread] = []
    try:
        for t in threads:
            t.start()
            started.append(t)
        jiffies0 = _cpu_jiffies()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        deadline_box[0] = t0 + window
        barrier.wait()
    except threading.BrokenBarrierError:
        pass  # a worker failed to set up: raised below, once every worker is back
    except BaseException:
        barrier.abort()
        for t in started:
            t.join()
        raise
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    jiffies1 = _cpu_jiffies()
    if failures:
        raise failures[0]
    neighbour = 0.0
    if jiffies0 is not None and jiffies1 is not None:
        total = (jiffies1 - jiffies0) / os.sysconf("SC_CLK_TCK")
        neighbour = max(0.0, (total - cpu) / wall)
    known = [w for w in waits if w is not None]
    starved = sum(known) / 1e9 / wall if len(known) == c else None
    return _Sample(c, sum(counts), wall, cpu, neighbour, starved)


def _spread(values: Sequence[float]) -> float:
    mid = statistics.median(values)
    return (max(values) - min(values)) / mid if mid > 0 else float("inf")


def _point(c: int, samples: list[_Sample], cores: int) -> Point:
    quiet = [s for s in samples if s.quiet(cores)]
    used = quiet if len(quiet) >= 2 else samples
    rates = [s.items / s.wall for s in used]
    starved = [s.starved for s in used if s.starved is not None]
    return Point(
        concurrency=c,
        items_per_s=statistics.median(rates),
        cpu_s_per_item=statistics.median(s.cpu / s.items for s in used),
        wall_s_per_item=statistics.median(c * s.wall / s.items for s in used),
        cores_busy=statistics.median(s.cpu / s.wall for s in used),
        neighbour_cores=statistics.median(s.neighbour for s in used),
        starved_cores=statistics.median(starved) if len(starved) == len(used) else None,
        spread=_spread(rates),
        rounds=len(used),
        items=sum(s.items for s in used),
        peak_rss_mib=round(_peak_rss_mib(), 1),
        samples=tuple(round(r, 3) for r in rates),
    )


def sweep(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    settings: SweepSettings,
    progress: Callable[[str], None] | None = None,
) -> list[Point]:
    """Measure ``fn`` at each of ``settings.levels``; return one point per level.

    Raises:
        ValueError: ``inputs`` is empty.
        CallFailed: ``fn`` raised on an input.
    """
    if not inputs:
        raise ValueError("no inputs to diagnose with: pass a non-empty list of items")
    started = time.perf_counter()
    cores = usable_cores()
    caller = make_caller(fn)
    call, close = caller()
    previous = enter_probe()  # this thread may be the user's: restored below
    try:  # warm up (imports, caches) and time one call
        t = time.perf_counter()
        warm = 0
        for k in range(min(3, len(inputs))):
            set_position(k)
            try:
                call(inputs[k])
            except Exception as exc:
                raise CallFailed(exc, k) from exc
            warm += 1
            if time.perf_counter() - t > settings.window_s:
                break  # slow calls: one is enough to time them, and the budget is small
        per_call = (time.perf_counter() - t) / warm
    finally:
        leave_chunk(previous)
        close()
    # Slow calls get a longer window so that every level still completes ~25 calls.
    window = max(settings.window_s, min(25 * per_call, 4 * settings.window_s))
    _measure(caller, inputs, max(settings.levels), min(0.1, window / 2))
    samples: dict[int, list[_Sample]] = {c: [] for c in settings.levels}
    for r in range(settings.max_rounds):
        order = settings.levels if r % 2 == 0 else tuple(reversed(settings.levels))
        for c in order:
            samples[c].append(_measure(caller, inputs, c, window))
        if progress:
            progress(
                f"round {r + 1}: "
                + ", ".join(
                    f"c={c} {samples[c][-1].items / samples[c][-1].wall:.0f}/s"
                    for c in settings.levels
                )
            )
        quiet = min(sum(s.quiet(cores) for s in v) for v in samples.values())
        stable = all(
            _spread([s.items / s.wall for s in v]) <= settings.tolerance for v in samples.values()
        )
        elapsed = time.perf_counter() - started
        per_round = elapsed / (r + 1.2)
        if r + 1 >= settings.min_rounds and quiet >= settings.min_rounds and stable:
            break
        if elapsed + per_round > settings.budget_s and r + 1 >= min(2, settings.max_rounds):
            break
    return [_point(c, samples[c], cores) for c in settings.levels]
