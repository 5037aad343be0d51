"""The executor advice, measured: run the function through a real pipeline on each executor.

The curves say why a function does (not) scale with threads; which executor runs it
fastest here also depends on what crossing to another process or interpreter costs
(pickling its inputs and outputs) and on what threads cannot see (a module-level lock
is one per process).  So the detector runs it the way a user would::

    source: the cached inputs, cycled --> pipe(fn, executor=E, concurrency=k) --> count
                                           thread       at the curve's best k
                                           process      at the usable cores
                                           interpreter  at the usable cores (where it imports)

and counts the outputs delivered in a window after a warm-up (pool start-up and
imports are not the steady state a long job runs in).  A margin that would decide
the advice is measured again in the reverse order.  ``_verdict`` then recommends
the fastest, keeping threads unless another executor is clearly faster.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._engine import PipelineBuilder
from .._engine._pipeline import Pipeline
from ..executors import subinterpreters_available
from ._records import ExecutorTrial

__all__ = ["fastest_trial", "run_trials", "trial_summary"]

_NAME = "trial"
WINDOWS = 2  # measurement windows per trial
CLEARLY_FASTER = 1.25  # another executor must beat the thread trial by this to be advised:
# crossing to it costs more to run, and one window per executor carries some noise


def _rate(
    fn: Callable[..., Any], items: Sequence[Any], executor: str, k: int, window_s: float
) -> float:
    """Outputs per second of ``pipe(fn, executor, concurrency=k)`` over ``items`` cycled."""
    builder = (
        PipelineBuilder(seed=0)  # a function that calls item_seed() runs here too
        .add_source(itertools.cycle(items))
        .pipe(fn, executor=executor, concurrency=k, name=_NAME)
        .add_sink()
    )
    # Pipeline(config), not build(): under diagnostic mode build() returns the profiler.
    with Pipeline(builder.config()) as pipeline:
        outputs = iter(pipeline)
        next(outputs)  # the pool has started and the first call ran (imports, caches)
        warm_until = time.perf_counter() + max(0.2, window_s / 2)
        for _ in outputs:  # every worker busy, chunks grown: the steady state
            if time.perf_counter() >= warm_until:
                break
        # Two windows, the faster counts: a neighbour's burst that slows one trial
        # would otherwise decide between executors (each trial gets the same chance).
        rates = []
        for _ in range(WINDOWS):
            started = time.perf_counter()
            deadline = started + window_s
            n = 0
            for _ in outputs:
                n += 1
                if time.perf_counter() >= deadline:
                    break
            rates.append(n / (time.perf_counter() - started))
        return max(rates)


def run_trials(
    fn: Callable[..., Any],
    items: Sequence[Any],
    *,
    thread_concurrency: int,
    pool_concurrency: int,
    window_s: float,
    progress: Callable[[str], None] | None = None,
) -> tuple[ExecutorTrial, ...]:
    """Measure ``fn`` on the thread, process and interpreter executors; one trial each."""
    plan = [("thread", thread_concurrency), ("process", pool_concurrency)]
    trials: list[ExecutorTrial] = []
    if subinterpreters_available():
        plan.append(("interpreter", pool_concurrency))
    else:
        trials.append(
            ExecutorTrial(
                "interpreter", pool_concurrency, None, "unavailable", "no subinterpreters"
            )
        )
    for executor, k in plan:
        try:
            rate = _rate(fn, items, executor, k, window_s)
        except (TypeError, ValueError) as exc:  # pipe() refused it: cannot run there
            trials.append(ExecutorTrial(executor, k, None, "unavailable", str(exc)))
        except Exception as exc:  # noqa: BLE001 - a failure there is a finding, not a crash
            trials.append(ExecutorTrial(executor, k, None, "error", f"{type(exc).__name__}: {exc}"))
        else:
            trials.append(ExecutorTrial(executor, k, rate))
            if progress:
                progress(f"executor trial: {executor} x{k} {rate:.0f} items/s")
    trials = _confirm_margins(trials, fn, items, window_s, progress)
    order = {"thread": 0, "process": 1, "interpreter": 2}
    return tuple(sorted(trials, key=lambda t: order[t.executor]))


def _decisive(a: ExecutorTrial, b: ExecutorTrial) -> bool:
    """One of two measured trials beats the other by the margin that decides advice."""
    fast, slow = sorted((a.items_per_s or 0.0, b.items_per_s or 0.0), reverse=True)
    return fast >= CLEARLY_FASTER * slow


def _confirm_margins(
    trials: list[ExecutorTrial],
    fn: Callable[..., Any],
    items: Sequence[Any],
    window_s: float,
    progress: Callable[[str], None] | None,
) -> list[ExecutorTrial]:
    """Measure again, in the reverse order, the trials whose margin over the thread trial
    would decide the advice; each executor keeps its faster pass.

    The trials run one after another, so a neighbour's burst of load that falls on one
    of them (both its windows) makes a margin that is not the function's; a second
    pass in the other order meets that burst with the other executor, if at all.
    """
    thread = next((t for t in trials if t.executor == "thread" and t.ok), None)
    if thread is None:
        return trials
    again = [t for t in trials if t.executor != "thread" and t.ok and _decisive(t, thread)]
    if not again:
        return trials
    better: dict[str, ExecutorTrial] = {}
    for t in [*reversed(again), thread]:
        try:
            rate = _rate(fn, items, t.executor, t.concurrency, window_s)
        except Exception:  # noqa: BLE001 - it ran once: the first pass stands
            continue
        if progress:
            progress(f"executor trial again: {t.executor} x{t.concurrency} {rate:.0f} items/s")
        better[t.executor] = dataclasses.replace(t, items_per_s=max(rate, t.items_per_s or 0.0))
    return [better.get(t.executor, t) for t in trials]


def fastest_trial(measured: Sequence[ExecutorTrial], *, isolated: bool = False) -> ExecutorTrial:
    """The measured trial to advise: the kind of executor the curves advise, unless
    the other kind is clearly faster.

    With ``isolated`` False (threads can help), the thread trial unless another
    executor is ``CLEARLY_FASTER`` (it costs more to run); with ``isolated`` True (the
    curves say threads cannot: GIL-bound on a GIL build), the fastest process or
    interpreter trial unless the threads are clearly faster than it (crossing costs
    more than the GIL saves).  One trial carries some noise: it overrides the curves
    only by a clear margin.
    """
    thread = next((t for t in measured if t.executor == "thread"), None)
    others = [t for t in measured if t.executor != "thread"]
    if thread is None or not others:
        return max(measured, key=lambda t: t.items_per_s or 0.0)
    other = max(others, key=lambda t: t.items_per_s or 0.0)
    fast_thread, fast_other = thread.items_per_s or 0.0, other.items_per_s or 0.0
    if isolated:
        return thread if fast_thread >= CLEARLY_FASTER * fast_other else other
    return other if fast_other >= CLEARLY_FASTER * fast_thread else thread


def trial_summary(trials: Sequence[ExecutorTrial], chosen: ExecutorTrial) -> str:
    parts = []
    for t in trials:
        if t.ok:
            parts.append(f"{t.executor} x{t.concurrency} {t.items_per_s:,.0f} items/s")
        elif t.status == "error":
            parts.append(f"{t.executor} failed ({t.message[:80]})")
    thread = next((t for t in trials if t.ok and t.executor == "thread"), None)
    text = ", ".join(parts)
    if chosen.executor != "thread" and thread is not None and thread.items_per_s:
        ratio = (chosen.items_per_s or 0.0) / thread.items_per_s
        text += f" (the {chosen.executor} executor ran {ratio:.2f}x the threads)"
    return text
