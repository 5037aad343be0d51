"""The shape of one curve: how it behaves at concurrency ``k`` against 1.

Each curve is given a *shape* at the level ``k`` closest to the core count:

    speedup S = T(k) / T(1)   = (busy(k) / busy(1)) / (cpu per item growth G)

so a curve that does not scale either failed to get the cores (parallelism not
obtained) or spent more CPU per item (threads interfere).  Parallelism not
obtained although the CPUs were there means the threads waited on each other (the
GIL, a lock); when other processes held the CPUs the workers wanted it means
nothing, and we say so rather than guess.

    internal     not linear, and one call already kept >= 1.4 cores busy
    linear       S >= 0.75 * min(k, cores), even discounting CPU the lone thread
                 waited for (a starved single thread inflates every speedup)
    starved      whether it is linear hinges on CPU that other processes took:
                 S with the CPU the k workers waited for would reach 0.75 * ideal
                 (unless CPU per item at least doubled), or only the undiscounted
                 S does (inconclusive)
    contended    CPU per item grew >= 2x, or >= 1.3x while S >= 1.1 (threads run but
                 interfere; a flat curve with a little more CPU is lock waiters spinning)
    serialized   otherwise: no parallelism, and the CPU the workers waited for
                 cannot explain it

"Waited for a CPU" is run-queue time from /proc/thread-self/schedstat: time a
worker was runnable but another process had the core.  Time asleep on the GIL or a
lock is not run-queue time (a 3.13t waiter that spins with sched_yield on a busy
machine shows some, which is why the bounds above weigh how much the wait could
matter rather than flag any wait).  Without schedstat, other processes' CPU use
filling the cores we left stands in for it.

The no-GIL shape and the GIL shape (same binary with ``-X gil=1``, else a stock
build) together give the verdict (``_verdict``).
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

from ._capacity import Capacity
from ._records import Curve, Point

__all__ = [
    "Shape",
    "best_concurrency",
    "bounds_variants",
    "compared",
    "ideal_speedup",
    "rounds_range",
    "shape",
    "unsteady",
]

LINEAR = 0.75  # fraction of the ideal speedup that counts as scaling
GROWTH = 1.3  # CPU-per-item growth that counts as threads interfering
STRONG_GROWTH = 2.0  # growth that counts even when other processes kept the workers waiting
GAIN = 1.1  # below this speedup a curve is flat: modest CPU growth there is waiters spinning
BUSY_ONE_CALL = 1.4  # cores one call keeps busy that count as internally parallel
IDLE = 0.5  # idle cores that show the threads waited rather than starved
NEIGHBOURS = 0.3  # cores used by other processes that can explain missing parallelism
MARGIN = 0.15  # throughput gap past the core count that counts as real (not noise)
UNSTEADY = 0.15  # a round's typical deviation from the median that makes a point unreliable


@dataclass(frozen=True)
class Shape:
    """How one curve behaves at concurrency ``k`` relative to 1."""

    kind: str  # linear | internal | contended | serialized | starved
    k: int
    speedup: float
    efficiency: float
    cpu_growth: float
    busy1: float
    busy_k: float
    max_speedup: float
    max_level: int
    starved_k: float = 0.0
    ideal: float = 0.0  # the speedup k workers would get with nothing shared


def _waited(p: Point, cores: int) -> float:
    """Cores' worth of CPU the workers wanted but other processes had.

    The workers' run-queue wait when the kernel reports it; otherwise an estimate
    from other processes' CPU use filling the cores we did not use.
    """
    if p.starved_cores is not None:
        return p.starved_cores
    want = min(p.concurrency, cores)
    if p.neighbour_cores >= NEIGHBOURS and cores - p.cores_busy - p.neighbour_cores < IDLE:
        return max(0.0, want - p.cores_busy)
    return 0.0


def compared(curve: Curve, cores: int) -> tuple[Point, Point]:
    """The two points a shape compares: one thread, and the most threads up to the cores."""
    one = curve.point(1) or curve.points[0]
    candidates = [p for p in curve.points if 2 <= p.concurrency <= cores]
    at = max(candidates, key=lambda p: p.concurrency) if candidates else curve.points[1]
    return one, at


def ideal_speedup(k: int, cores: int, capacity: Capacity | None = None) -> float:
    """The speedup ``k`` workers would get with nothing shared: the cores, or what
    ``k`` independent processes measurably got on this machine (``_capacity``)."""
    ideal = float(min(k, cores))
    if capacity is not None and capacity.level >= 2:
        ideal = max(1.0, min(ideal, ideal * capacity.speedup / capacity.level))
    return ideal


def shape(curve: Curve, cores: int, capacity: Capacity | None = None) -> Shape | None:
    """Classify ``curve``; None when it has no usable points."""
    if not curve.ok or cores < 2:
        return None
    one, at = compared(curve, cores)
    speedup = at.items_per_s / one.items_per_s  # not speedup_at: ``one`` may not be at 1
    ideal = ideal_speedup(at.concurrency, cores, capacity)
    growth = at.cpu_s_per_item / one.cpu_s_per_item if one.cpu_s_per_item > 0 else 1.0
    top = max(curve.points, key=lambda p: p.items_per_s)
    eff = speedup / ideal
    # Bounds on the speedup had no other process taken CPU the workers wanted: a
    # starved lone thread makes it look larger (low), starved k workers smaller (high).
    w1, wk = _waited(one, cores), _waited(at, cores)
    # A thread's wall time is running + waiting for a CPU + asleep; without the CPU wait
    # the lone thread would do 1 / (1 - w1) as much, the k workers k / (k - wk).
    low = speedup * (1 - min(w1, 0.95))
    high = speedup * at.concurrency / max(at.concurrency - wk, 0.05 * at.concurrency)
    # One call already keeping the cores busy leaves no headroom whatever the machine's
    # capacity: judged against the cores, never against a lower measured ideal.
    if one.cores_busy >= BUSY_ONE_CALL and speedup / min(at.concurrency, cores) < LINEAR:
        kind = "internal"
    elif low / ideal >= LINEAR:
        kind = "linear"
    elif eff >= LINEAR or (high / ideal >= LINEAR and growth < STRONG_GROWTH):
        # The verdict would hinge on CPU other processes took: say so instead of guessing.
        # (Neighbours' cache traffic can add some CPU per item; only a doubling is clear
        # enough to call contention on a machine that kept our threads waiting.)
        kind = "starved"
    elif growth >= STRONG_GROWTH or (growth >= GROWTH and speedup >= GAIN):
        # Threads that run and interfere.  A flat curve with modestly higher CPU per item
        # is threads queueing on a lock whose waiters spin a little before they sleep.
        kind = "contended"
    else:
        kind = "serialized"
    return Shape(
        kind,
        at.concurrency,
        speedup,
        eff,
        growth,
        one.cores_busy,
        at.cores_busy,
        top.items_per_s / one.items_per_s,
        top.concurrency,
        wk,
        ideal,
    )


def unsteady(p: Point) -> bool:
    """Whether the rounds behind ``p`` disagree too much for its median to carry a verdict.

    Uses the median absolute deviation of the rounds, not their range: one round
    disturbed by another process barely moves a median of several, while rounds
    that scatter do.
    """
    if len(p.samples) < 2:
        return p.spread > 2 * UNSTEADY
    mid = statistics.median(p.samples)
    deviation = statistics.median(abs(x - mid) for x in p.samples)
    return mid <= 0 or deviation > UNSTEADY * mid


def rounds_range(p: Point) -> tuple[float, float]:
    """The throughput range of ``p``'s rounds, less the most extreme one at each end."""
    xs = sorted(p.samples)
    if len(xs) < 2:
        half = p.spread / 2 * p.items_per_s
        return p.items_per_s - half, p.items_per_s + half
    if len(xs) >= 4:
        xs = xs[1:-1]
    return xs[0], xs[-1]


def bounds_variants(curve: Curve | None, cores: int) -> list[Curve | None]:
    """``curve``, plus its most and least scalable readings within its unsteady points' range."""
    if curve is None:
        return [curve]
    one, at = compared(curve, cores)
    if not (unsteady(one) or unsteady(at)):
        return [curve]
    (lo1, hi1), (lok, hik) = _bounds(one), _bounds(at)

    def reading(rate1: float, rate_k: float) -> Curve:
        rates = {one.concurrency: rate1, at.concurrency: rate_k}
        return dataclasses.replace(
            curve,
            points=tuple(
                dataclasses.replace(p, items_per_s=rates[p.concurrency])
                if p.concurrency in rates
                else p
                for p in curve.points
            ),
        )

    return [curve, reading(hi1, lok), reading(lo1, hik)]


def _bounds(p: Point) -> tuple[float, float]:
    """Where ``p``'s throughput may lie: its rounds' range when they scatter, else its median."""
    return rounds_range(p) if unsteady(p) else (p.items_per_s, p.items_per_s)


def best_concurrency(curve: Curve | None, cores: int) -> int:
    """The smallest concurrency within 5% of the best throughput.

    Levels past the core count compete only when they beat every level within it
    by more than MARGIN: more threads than cores help work that waits, and then
    clearly; a few percent there is round-to-round noise, not a reason for 4
    threads on 2 cores.
    """
    if curve is None or not curve.ok:
        return 1
    within = [p for p in curve.points if p.concurrency <= cores] or list(curve.points)
    top_within = max(p.items_per_s for p in within)
    if any(p.items_per_s > (1 + MARGIN) * top_within for p in curve.points):
        within = list(curve.points)
    top = max(p.items_per_s for p in within)
    return min(p.concurrency for p in within if p.items_per_s >= 0.95 * top)
