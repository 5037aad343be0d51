"""From measured curves to a verdict, an explanation, a concurrency and an executor.

Each curve is first given a *shape* at the level ``k`` closest to the core count:

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
build) together give the verdict; see ``_combine``.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ._capacity import MIN_CAPACITY
from ._model import Curve, ExecutorAdvice, Point, Verdict, executor_with_gil

__all__ = ["Capacity", "Shape", "decide", "ideal_speedup"]

LINEAR = 0.75  # fraction of the ideal speedup that counts as scaling
GROWTH = 1.3  # CPU-per-item growth that counts as threads interfering
STRONG_GROWTH = 2.0  # growth that counts even when other processes kept the workers waiting
GAIN = 1.1  # below this speedup a curve is flat: modest CPU growth there is waiters spinning
BUSY_ONE_CALL = 1.4  # cores one call keeps busy that count as internally parallel
IDLE = 0.5  # idle cores that show the threads waited rather than starved
NEIGHBOURS = 0.3  # cores used by other processes that can explain missing parallelism
MARGIN = 0.15  # speedup gap that counts as a real difference between curves
REGRESSION = 0.8  # and the ratio below which no-GIL scaling counts as worse
PARTIAL = 0.3  # share of the ideal extra speedup that counts as a partial gain
TINY_CALL_S = 20e-6  # calls shorter than this are dominated by per-item overheads
UNSTEADY = 0.15  # a round's typical deviation from the median that makes a point unreliable


@dataclass(frozen=True)
class Capacity:
    """What ``level`` processes spinning pure Python got together, in units of one alone."""

    level: int
    speedup: float


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
    idle_k: float
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


def _compared(curve: Curve, cores: int) -> tuple[Point, Point]:
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
    one, at = _compared(curve, cores)
    speedup = at.items_per_s / one.items_per_s
    ideal = ideal_speedup(at.concurrency, cores, capacity)
    growth = at.cpu_s_per_item / one.cpu_s_per_item if one.cpu_s_per_item > 0 else 1.0
    idle = cores - at.cores_busy - at.neighbour_cores
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
        idle,
        top.items_per_s / one.items_per_s,
        top.concurrency,
        wk,
        ideal,
    )


def _unsteady(p: Point) -> bool:
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


def _range(p: Point) -> tuple[float, float]:
    """The throughput range of ``p``'s rounds, less the most extreme one at each end."""
    xs = sorted(p.samples)
    if len(xs) < 2:
        half = p.spread / 2 * p.items_per_s
        return p.items_per_s - half, p.items_per_s + half
    if len(xs) >= 4:
        xs = xs[1:-1]
    return xs[0], xs[-1]


def _variants(curve: Curve | None, cores: int) -> list[Curve | None]:
    """``curve``, plus its most and least scalable readings within its unsteady points' range."""
    if curve is None:
        return [curve]
    one, at = _compared(curve, cores)
    if not (_unsteady(one) or _unsteady(at)):
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
    return _range(p) if _unsteady(p) else (p.items_per_s, p.items_per_s)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    explanation: str
    best_concurrency: int
    advice: ExecutorAdvice
    limited: bool
    missing: str
    notes: tuple[str, ...]


def _best(curve: Curve | None, cores: int) -> int:
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


def _describe(curve: Curve, s: Shape) -> str:
    return (
        f"{curve.label}: {s.k} threads ran {s.speedup:.2f}x as fast as 1 "
        f"(CPU per item {s.cpu_growth:.2f}x, {s.busy1:.2f} -> {s.busy_k:.2f} cores busy"
        + (f", waited {s.starved_k:.2f} cores' worth for a CPU" if s.starved_k >= 0.1 else "")
        + ")"
    )


_MEANING = {
    Verdict.SCALES: "It scales: the work releases the GIL or waits, so threads help on any build.",
    Verdict.GIL_BOUND: (
        "It is GIL-bound: it scales once the GIL is gone and is flat with it, so free-threading "
        "(or subinterpreters / processes on GIL builds) is the fix."
    ),
    Verdict.BLOCKING_CONTENTION: (
        "Threads wait: the curves are flat with and without the GIL while CPU per item stays "
        "steady and cores sit idle, so a lock, a serialized resource or a device is the limit. "
        "Find the lock (or make the resource per-thread); more threads will not help."
    ),
    Verdict.COMPUTE_CONTENTION: (
        "Threads run but interfere: CPU per item grows with concurrency (shared reference counts "
        "or per-object locks, cache lines, memory bandwidth). Keep per-thread state and avoid "
        "touching shared objects per item."
    ),
    Verdict.INTERNALLY_PARALLEL: (
        "One call already keeps more than one core busy (BLAS or another native thread pool), "
        "so more concurrency cannot help; use concurrency 1 or cap the library's threads."
    ),
    Verdict.FT_REGRESSION: (
        "It is worse without the GIL than with it: contention on shared objects that the GIL "
        "used to serialize cheaply. Make the shared state per-thread (or immutable) before "
        "raising concurrency on a free-threaded build."
    ),
}


def _combine(n: Shape | None, g: Shape | None) -> tuple[Verdict, str]:
    """Verdict from the no-GIL shape ``n`` and the GIL shape ``g``; plus a reason if inconclusive."""
    if n is None and g is None:
        return Verdict.INCONCLUSIVE, "no configuration produced measurements"
    if n is None:
        assert g is not None
        return {
            "linear": (Verdict.SCALES, ""),
            "internal": (Verdict.INTERNALLY_PARALLEL, ""),
            "contended": (Verdict.COMPUTE_CONTENTION, ""),
            "serialized": (
                Verdict.INCONCLUSIVE,
                "flat with the GIL and CPU per item steady: the GIL "
                "or a lock, and only a run without the GIL can tell which",
            ),
            "starved": (Verdict.INCONCLUSIVE, "other processes kept the cores busy"),
        }[g.kind]
    if n.kind == "starved" or (g is not None and g.kind == "starved" and n.kind == "linear"):
        return Verdict.INCONCLUSIVE, "other processes kept the cores busy during the measurement"
    if n.kind == "internal" or (g is not None and g.kind == "internal" and n.kind != "linear"):
        return Verdict.INTERNALLY_PARALLEL, ""
    if n.kind == "linear":
        if g is None or g.kind == "linear" or n.efficiency - g.efficiency < MARGIN:
            return Verdict.SCALES, ""
        return Verdict.GIL_BOUND, ""
    worse = (
        g is not None
        and g.kind != "starved"
        and n.speedup < g.speedup - MARGIN
        and n.speedup < REGRESSION * g.speedup
    )
    if n.kind == "contended":
        return (Verdict.FT_REGRESSION if worse else Verdict.COMPUTE_CONTENTION), ""
    # Serialized without the GIL.  A clear partial gain over the GIL curve still makes the
    # GIL the main limit (e.g. 1.45x vs 1.0x on 2 cores), whatever caps the rest.
    if (
        g is not None
        and g.kind in ("serialized", "contended")
        and n.speedup >= 1 + PARTIAL * ((n.ideal or n.k) - 1)
        and n.efficiency - g.efficiency >= MARGIN
    ):
        return Verdict.GIL_BOUND, ""
    # Lock hand-offs cost more without the GIL (0.76x vs 0.96x here), so among flat curves
    # only a GIL curve that actually scales makes a no-GIL one a regression.
    if worse and g is not None and g.kind == "linear":
        return Verdict.FT_REGRESSION, ""
    return Verdict.BLOCKING_CONTENTION, ""


def decide(
    curves: Sequence[Curve],
    *,
    cores: int,
    here_free_threaded: bool,
    here_gil_off: bool,
    subinterpreters: bool,
    missing: str = "",
    capacity: Capacity | None = None,
) -> Decision:
    """Attribute the curves to a cause and advise a concurrency and an executor.

    ``capacity`` (measured next to the curves) replaces the core count as the ideal
    speedup; below ``MIN_CAPACITY`` the machine cannot run two things at once right
    now and the verdict is inconclusive, whatever the curves say.
    """
    usable = [c for c in curves if c.ok]
    no_gil = next(
        (c for c in usable if c.role in ("no-gil", "in-process") and not c.gil_enabled), None
    )
    gil = next((c for c in usable if c.role == "gil"), None) or next(
        (c for c in usable if c.role in ("gil-build", "in-process") and c.gil_enabled), None
    )
    notes: list[str] = []
    for c in curves:
        if not c.ok:
            notes.append(f"{c.label}: no measurement ({c.status}: {c.message})")
    fastest = min((c.points[0].wall_s_per_item for c in usable), default=1.0)
    if fastest < TINY_CALL_S:
        notes.append(
            f"one call takes about {fastest * 1e6:.1f} µs: at this size per-item overheads (thread "
            "hand-offs in a pipeline) outweigh the work; batch items (aggregate) before this stage"
        )
    reenabled = sorted({m for c in curves for m in c.gil_reenabled_by})
    if reenabled:
        notes.append(
            "importing " + ", ".join(reenabled) + " re-enabled the GIL on the free-threaded "
            "build, so that probe ran with the GIL on"
        )
    if cores < 2:
        verdict, reason = Verdict.INCONCLUSIVE, "only one usable core: scaling cannot be measured"
        n_shape = g_shape = None
    elif capacity is not None and capacity.speedup < MIN_CAPACITY:
        verdict = Verdict.INCONCLUSIVE
        reason = (
            f"{capacity.level} processes spinning pure Python ran only {capacity.speedup:.2f}x "
            "as fast as one on this machine during the measurement: it could not run two "
            "things at once (shared or oversubscribed cores), so scaling cannot be judged"
        )
        n_shape = g_shape = None
    else:
        n_shape = shape(no_gil, cores, capacity) if no_gil else None
        g_shape = shape(gil, cores, capacity) if gil else None
        verdict, reason = _combine(n_shape, g_shape)
        # Prefer no answer to a wrong one: where the rounds behind a compared point
        # scatter, the verdict must hold across their range.
        unsteady = [
            f"{c.label} at {p.concurrency} thread{'s' if p.concurrency > 1 else ''}"
            for c in (no_gil, gil)
            if c
            for p in dict.fromkeys(_compared(c, cores))
            if _unsteady(p)
        ]
        if unsteady and verdict is not Verdict.INCONCLUSIVE:
            outcomes = {
                _combine(
                    shape(vn, cores, capacity) if vn else None,
                    shape(vg, cores, capacity) if vg else None,
                )[0]
                for vn in _variants(no_gil, cores)
                for vg in _variants(gil, cores)
            }
            if len(outcomes) > 1:
                verdict = Verdict.INCONCLUSIVE
                reason = (
                    f"the rounds of {' and '.join(unsteady)} scattered too much to choose "
                    f"between {' and '.join(sorted(v.value for v in outcomes))} (machine busy?)"
                )
    # Without both sides of the GIL comparison a verdict rests on one curve: say so.
    limited = no_gil is None or gil is None
    if no_gil is None and not missing:
        missing = "a free-threaded interpreter where the function imports and runs with the GIL off"
        missing += " (tools/find-pythons.sh builds one)"
        failed = next((c for c in curves if c.free_threaded and not c.ok), None)
        if failed is not None:
            missing += f" ({failed.label}: {failed.status}: {failed.message})"
    elif gil is None and not missing:
        missing = "a run with the GIL on (the function failed to load in every GIL configuration)"
    parts = [_describe(c, s) for c, s in ((no_gil, n_shape), (gil, g_shape)) if c and s]
    stock = next((c for c in usable if c.role == "gil-build" and c is not gil), None)
    ref = no_gil or gil
    if stock and ref and ref is not stock:
        # CPU per item, not throughput: it does not depend on what else the machine ran.
        tax = ref.points[0].cpu_s_per_item / stock.points[0].cpu_s_per_item
        parts.append(f"one call took {tax:.2f}x the CPU time on {ref.label} as on {stock.label}")
    if capacity is not None and cores >= 2:
        parts.append(
            f"the ideal speedup is what {capacity.level} independent processes got on this "
            f"machine meanwhile: {capacity.speedup:.2f}x"
        )
    text = "; ".join(parts) + "." if parts else ""
    if verdict is Verdict.INCONCLUSIVE:
        text += f" Inconclusive: {reason}."
        if "busy" in reason:
            text += " Rerun on a quieter machine or with longer measurements (not --quick)."
    else:
        text += " " + _MEANING[verdict]
    if (
        verdict is Verdict.SCALES
        and n_shape
        and n_shape.max_level > cores
        and n_shape.max_speedup > cores
    ):
        text += (
            f" It kept scaling past the core count ({n_shape.max_speedup:.1f}x at "
            f"{n_shape.max_level} threads): it mostly waits, so more threads than cores help."
        )
    if limited:
        text += f" Limited verdict: missing {missing}."
    if reenabled:
        text += " " + notes[-1][0].upper() + notes[-1][1:] + "."
    ft_exec = "thread"
    here_exec = "thread"
    if not (here_free_threaded and here_gil_off):
        numpy = any(c.uses_numpy for c in usable)
        here_exec = executor_with_gil(verdict, uses_numpy=numpy, subinterpreters=subinterpreters)
    if verdict is Verdict.GIL_BOUND:
        best = _best(no_gil, cores)
    elif verdict in (Verdict.INTERNALLY_PARALLEL,):
        best = 1
    else:
        here = no_gil if (here_free_threaded and here_gil_off) else (gil or no_gil)
        best = _best(here, cores)
    if verdict is Verdict.INCONCLUSIVE:
        text += f" Best measured: concurrency {best} (not a recommendation: the figures are not conclusive)."
    else:
        text += f" Recommended: concurrency {best} with the {here_exec} executor here"
        text += "." if here_exec == ft_exec else f" ({ft_exec} on a free-threaded build)."
    return Decision(
        verdict,
        text.strip(),
        best,
        ExecutorAdvice(here_exec, ft_exec),
        limited,
        missing if limited else "",
        tuple(notes),
    )
