"""From measured curves to a verdict, an explanation, a concurrency and an executor.

    curves --shape()--> no-GIL shape n, GIL shape g     (``_shape``: one curve at k vs 1)
           --_combine(n, g)--> verdict                  (the table of causes below)
           --checks--> inconclusive where the rounds scatter across a threshold
                       (``bounds_variants``) or a second probe process reads
                       another verdict (``_repeat``)
           --> explanation, best concurrency, executor advice

The no-GIL shape and the GIL shape (same binary with ``-X gil=1``, else a stock
build) together give the verdict; see ``_combine``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._capacity import MIN_CAPACITY, Capacity
from ._records import Curve, ExecutorAdvice, ExecutorTrial, Verdict
from ._repeat import disagreement
from ._shape import Shape, best_concurrency, bounds_variants, compared, shape, unsteady
from ._trials import fastest_trial, trial_summary

__all__ = ["Decision", "decide", "executor_with_gil"]

MARGIN = 0.15  # speedup gap that counts as a real difference between curves
REGRESSION = 0.8  # and the ratio below which no-GIL scaling counts as worse
PARTIAL = 0.3  # share of the ideal extra speedup that counts as a partial gain
HAND_OFF_GROWTH = 1.5  # CPU-per-item growth of a flat curve past what lock waiters spin
TINY_CALL_S = 20e-6  # calls shorter than this are dominated by per-item overheads


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    explanation: str
    best_concurrency: int
    advice: ExecutorAdvice
    limited: bool
    missing: str
    notes: tuple[str, ...]


def _summary(curve: Curve, s: Shape) -> str:
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
    # Lock hand-offs cost more without the GIL (0.76x vs 0.96x, CPU per item <= 1.2x): a
    # worse flat no-GIL curve is a regression only against a GIL curve that scales, or with
    # more CPU per item than waiters spin (a shared dict: 0.65x vs 1.13x at 1.84x, in CI).
    if worse and g is not None and (g.kind == "linear" or n.cpu_growth >= HAND_OFF_GROWTH):
        return Verdict.FT_REGRESSION, ""
    return Verdict.BLOCKING_CONTENTION, ""


def executor_with_gil(verdict: Verdict, *, uses_numpy: bool, subinterpreters: bool) -> str:
    """The executor to advise where the GIL is on: ``"thread"``, ``"interpreter"`` or ``"process"``.

    Only GIL-bound work needs to leave the threads: for subinterpreters, or for
    processes where there are none or numpy is involved (numpy refuses subinterpreters).
    """
    if verdict is not Verdict.GIL_BOUND:
        return "thread"
    return "process" if uses_numpy or not subinterpreters else "interpreter"


def _check_repeats(
    verdict: Verdict,
    reason: str,
    no_gil: tuple[Curve | None, Shape | None],
    gil: tuple[Curve | None, Shape | None],
    repeats: Sequence[Curve],
    cores: int,
    capacity: Capacity | None,
    notes: list[str],
) -> tuple[Verdict, str]:
    """Hold the verdict against a second process's curve of the same configuration.

    Two processes that disagree beyond their rounds' spread, reading as different
    verdicts, make the verdict inconclusive with both figures (``_repeat``).
    """
    for side, (first, first_shape) in enumerate((no_gil, gil)):
        second = next((c for c in repeats if first and c.repeat_of == first.label), None)
        if first is None or second is None or first_shape is None:
            continue
        k = first_shape.k
        apart = disagreement(first, second, k)
        if apart is None:
            s1, s2 = first.speedup_at(k), second.speedup_at(k)
            if s1 is not None and s2 is not None:
                notes.append(
                    f"a second process measured {first.label} at {k} threads {s2:.2f}x as fast "
                    f"as 1 (the first: {s1:.2f}x): the same within their rounds' spread"
                )
            continue
        a, b = apart
        figures = (
            f"{first.label} ran {k} threads {a} as fast as 1 in one probe process "
            f"and {b} in another"
        )
        again = shape(second, cores, capacity)
        other = _combine(*((again, gil[1]) if side == 0 else (no_gil[1], again)))[0]
        if verdict is not Verdict.INCONCLUSIVE and other is not verdict:
            return Verdict.INCONCLUSIVE, (
                f"two probe processes disagreed beyond their own round-to-round spread: "
                f"{figures}, which reads as {verdict.value} in the first and {other.value} "
                "in the second (the function scales differently from one process to the next)"
            )
        notes.append(f"{figures}: beyond their rounds' spread, but the verdict is the same")
    return verdict, reason


def decide(
    curves: Sequence[Curve],
    *,
    cores: int,
    here_free_threaded: bool,
    here_gil_off: bool,
    subinterpreters: bool,
    missing: str = "",
    capacity: Capacity | None = None,
    trials: Sequence[ExecutorTrial] = (),
) -> Decision:
    """Attribute the curves to a cause and advise a concurrency and an executor.

    ``capacity`` (measured next to the curves) replaces the core count as the ideal
    speedup; below ``MIN_CAPACITY`` the machine cannot run two things at once right
    now and the verdict is inconclusive, whatever the curves say.  ``trials`` (the
    function run through a pipeline on each executor here, ``_trials``) replace the
    executor advice for this interpreter by the fastest one measured.
    """
    usable = [c for c in curves if c.ok and not c.repeat_of]
    repeats = [c for c in curves if c.ok and c.repeat_of]
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
    gil_note = (
        "importing " + ", ".join(reenabled) + " re-enabled the GIL on the free-threaded "
        "build, so that probe ran with the GIL on"
    )
    if reenabled:
        notes.append(gil_note)
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
        scattered = [
            f"{c.label} at {p.concurrency} thread{'s' if p.concurrency > 1 else ''}"
            for c in (no_gil, gil)
            if c
            for p in dict.fromkeys(compared(c, cores))
            if unsteady(p)
        ]
        if scattered and verdict is not Verdict.INCONCLUSIVE:
            outcomes = {
                _combine(
                    shape(vn, cores, capacity) if vn else None,
                    shape(vg, cores, capacity) if vg else None,
                )[0]
                for vn in bounds_variants(no_gil, cores)
                for vg in bounds_variants(gil, cores)
            }
            if len(outcomes) > 1:
                verdict = Verdict.INCONCLUSIVE
                reason = (
                    f"the rounds of {' and '.join(scattered)} scattered too much to choose "
                    f"between {' and '.join(sorted(v.value for v in outcomes))} (machine busy?)"
                )
        verdict, reason = _check_repeats(
            verdict, reason, (no_gil, n_shape), (gil, g_shape), repeats, cores, capacity, notes
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
    parts = [_summary(c, s) for c, s in ((no_gil, n_shape), (gil, g_shape)) if c and s]
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
    if reenabled:  # not notes[-1]: the repeat check may have noted after it
        text += " " + gil_note[0].upper() + gil_note[1:] + "."
    ft_exec = "thread"
    here_exec = "thread"
    if not (here_free_threaded and here_gil_off):
        numpy = any(c.uses_numpy for c in usable)
        here_exec = executor_with_gil(verdict, uses_numpy=numpy, subinterpreters=subinterpreters)
    if verdict is Verdict.GIL_BOUND:
        best = best_concurrency(no_gil, cores)
    elif verdict in (Verdict.INTERNALLY_PARALLEL,):
        best = 1
    else:
        here = no_gil if (here_free_threaded and here_gil_off) else (gil or no_gil)
        best = best_concurrency(here, cores)
    measured = [t for t in trials if t.ok]
    if measured and verdict is not Verdict.INCONCLUSIVE:
        chosen = fastest_trial(measured, isolated=here_exec != "thread")
        here_exec, best = chosen.executor, chosen.concurrency
        if here_free_threaded and here_gil_off:
            ft_exec = here_exec  # measured on a free-threaded build with the GIL off
        text += " Measured here through a pipeline: " + trial_summary(trials, chosen) + "."
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
