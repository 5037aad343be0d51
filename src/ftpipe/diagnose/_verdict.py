"""From measured curves to a verdict, an explanation, a concurrency and an executor.

Each curve is first given a *shape* at the level ``k`` closest to the core count:

    speedup S = T(k) / T(1)   = (busy(k) / busy(1)) / (cpu per item growth G)

so a curve that does not scale either failed to get the cores (parallelism not
obtained) or spent more CPU per item (threads interfere).  Parallelism not
obtained while cores sat idle means the threads waited (the GIL, a lock); while
other processes filled the cores it means nothing, and we say so rather than guess.

    linear       S >= 0.75 * min(k, cores)
    internal     one call already kept >= 1.4 cores busy
    contended    CPU per item grew >= 1.3x
    serialized   parallelism not obtained, >= 0.5 core idle
    starved      parallelism not obtained, the machine was full (inconclusive)

The no-GIL shape and the GIL shape (same binary with ``-X gil=1``, else a stock
build) together give the verdict; see ``_combine``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._model import Curve, ExecutorAdvice, Verdict

__all__ = ["Shape", "decide"]

LINEAR = 0.75  # fraction of the ideal speedup that counts as scaling
GROWTH = 1.3  # CPU-per-item growth that counts as threads interfering
BUSY_ONE_CALL = 1.4  # cores one call keeps busy that count as internally parallel
IDLE = 0.5  # idle cores that show the threads waited rather than starved
MARGIN = 0.15  # speedup gap that counts as a real difference between curves


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


def shape(curve: Curve, cores: int) -> Shape | None:
    """Classify ``curve``; None when it has no usable points."""
    if not curve.ok or cores < 2:
        return None
    one = curve.point(1) or curve.points[0]
    candidates = [p for p in curve.points if 2 <= p.concurrency <= cores]
    at = max(candidates, key=lambda p: p.concurrency) if candidates else curve.points[1]
    speedup = at.items_per_s / one.items_per_s
    ideal = min(at.concurrency, cores)
    growth = at.cpu_s_per_item / one.cpu_s_per_item if one.cpu_s_per_item > 0 else 1.0
    idle = cores - at.cores_busy - at.neighbour_cores
    top = max(curve.points, key=lambda p: p.items_per_s)
    eff = speedup / ideal
    if eff >= LINEAR:
        kind = "linear"
    elif one.cores_busy >= BUSY_ONE_CALL:
        kind = "internal"
    elif growth >= GROWTH and at.cores_busy > one.cores_busy + 0.3:
        kind = "contended"
    elif idle >= IDLE:
        kind = "serialized"
    else:
        kind = "starved"
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
    )


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    explanation: str
    best_concurrency: int
    advice: ExecutorAdvice
    limited: bool
    missing: str
    notes: tuple[str, ...]


def _best(curve: Curve | None) -> int:
    if curve is None or not curve.ok:
        return 1
    top = max(p.items_per_s for p in curve.points)
    return min(p.concurrency for p in curve.points if p.items_per_s >= 0.95 * top)


def _describe(curve: Curve, s: Shape) -> str:
    return (
        f"{curve.label}: {s.k} threads ran {s.speedup:.2f}x as fast as 1 "
        f"(CPU per item {s.cpu_growth:.2f}x, {s.busy1:.2f} -> {s.busy_k:.2f} cores busy"
        + (f", {s.idle_k:.1f} idle" if s.idle_k >= 0.3 else "")
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
    worse = g is not None and g.kind != "starved" and n.speedup < g.speedup - MARGIN
    if n.kind == "contended":
        return (Verdict.FT_REGRESSION if worse else Verdict.COMPUTE_CONTENTION), ""
    # serialized without the GIL
    return (Verdict.FT_REGRESSION if worse else Verdict.BLOCKING_CONTENTION), ""


def decide(
    curves: Sequence[Curve],
    *,
    cores: int,
    here_free_threaded: bool,
    here_gil_off: bool,
    subinterpreters: bool,
    missing: str = "",
) -> Decision:
    """Attribute the curves to a cause and advise a concurrency and an executor."""
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
        elif any(p.spread > 0.35 for p in c.points):
            notes.append(
                f"{c.label}: figures varied by more than 35% between rounds (machine busy?)"
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
    else:
        n_shape = shape(no_gil, cores) if no_gil else None
        g_shape = shape(gil, cores) if gil else None
        verdict, reason = _combine(n_shape, g_shape)
    # Without both sides of the GIL comparison a verdict rests on one curve: say so.
    limited = no_gil is None or gil is None
    if no_gil is None and not missing:
        missing = "a free-threaded interpreter where the function imports and runs with the GIL off"
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
        text += f" Limited verdict: missing {missing}; tools/find-pythons.sh builds or finds one."
    if reenabled:
        text += " " + notes[-1][0].upper() + notes[-1][1:] + "."
    ft_exec = "thread"
    here_exec = "thread"
    if verdict is Verdict.GIL_BOUND and not (here_free_threaded and here_gil_off):
        numpy = any(c.uses_numpy for c in usable)
        here_exec = "process" if numpy or not subinterpreters else "interpreter"
    if verdict is Verdict.GIL_BOUND:
        best = _best(no_gil)
    elif verdict in (Verdict.INTERNALLY_PARALLEL,):
        best = 1
    else:
        here = no_gil if (here_free_threaded and here_gil_off) else (gil or no_gil)
        best = _best(here)
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
