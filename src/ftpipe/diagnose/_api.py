"""``diagnose(fn, inputs)``: measure a function under each interpreter configuration and explain it."""

from __future__ import annotations

import functools
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .._runtime import gil_enabled, is_free_threaded, runtime_info, usable_cores
from .._validate import positive_int
from ._capacity import Capacity, measure_capacity
from ._diagnosis import Diagnosis
from ._launch import run_probe
from ._plan import forced_off, plan
from ._records import Configuration, Curve, ExecutorTrial, Verdict
from ._repeat import repeat_plan
from ._shape import compared
from ._sweep import CallFailed, SweepSettings, settings_for, sweep
from ._trials import WINDOWS, run_trials
from ._verdict import decide

__all__ = ["address", "diagnose"]


def _label() -> str:
    v = ".".join(map(str, sys.version_info[:2]))
    return v + ("t" if is_free_threaded() else "")


def address(fn: Callable[..., Any]) -> tuple[str, str | None, str]:
    """Return ``(module:qualname, script path or None, "")``, or ``("", None, why not)``.

    A probe in another interpreter can only find functions importable by name:
    lambdas, closures, partials and objects whose name leads elsewhere are not.
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return "", None, f"{type(fn).__name__} objects have no module and qualified name"
    if "<lambda>" in qualname:
        return "", None, "it is a lambda"
    if "<locals>" in qualname:
        return "", None, "it is defined inside another function (a closure)"
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if obj is not fn:
        return "", None, f"{module}:{qualname} does not lead back to the same object"
    main_path = None
    if module == "__main__":
        main_path = getattr(sys.modules["__main__"], "__file__", None)
        if not main_path:
            return "", None, "it is defined in an interactive __main__ with no script file"
        main_path = os.path.abspath(main_path)
    return f"{module}:{qualname}", main_path, ""


def _in_process(
    fn: Callable[..., Any],
    items: Sequence[Any],
    settings: SweepSettings,
    progress: Callable[[str], None] | None,
) -> Curve:
    started = time.perf_counter()
    config = Configuration(
        f"in-process {_label()} GIL {'on' if gil_enabled() else 'off'}",
        "in-process",
        sys.executable,
        ".".join(map(str, sys.version_info[:3])),
        is_free_threaded(),
        None,
    )
    say = (lambda s: progress(f"{config.label}: {s}")) if progress else None
    try:
        points = tuple(sweep(fn, items, settings, say))
    except CallFailed as exc:
        return Curve.of(
            config,
            gil_enabled=gil_enabled(),
            status="error",
            message=str(exc),
            seconds=time.perf_counter() - started,
        )
    return Curve.of(
        config,
        gil_enabled=gil_enabled(),
        points=points,
        seconds=time.perf_counter() - started,
        uses_numpy="numpy" in sys.modules or "torch" in sys.modules,
    )


@dataclass
class _Measured:
    """The curves of a diagnosis, and what the report must say about how they were got."""

    curves: list[Curve] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: str = ""


def _measure(
    fn: Callable[..., Any],
    items: list[Any],
    settings: SweepSettings,
    configurations: str | Sequence[Configuration],
    progress: Callable[[str], None] | None,
) -> _Measured:
    """Choose where to measure ``fn`` (the configurations, or this process as the
    fallback) and measure it there.  The one place every fallback is decided:

        not addressable by name, or "in-process" asked for  -> this process only
        inputs cannot be pickled                             -> this process only
        no configuration could load the function or inputs  -> this process as well
        a no-GIL probe whose imports turned the GIL back on  -> again with -X gil=0
        the curve the verdict leans on                       -> again in a second process
    """
    out = _Measured()
    target, main_path, why = address(fn)
    if configurations == "in-process" or not target:
        if not target:
            out.notes.append(
                f"measured in this process only: {why}, so other interpreters cannot import it"
            )
            out.missing = (
                f"a function importable by module and name ({why}); move it to module level"
            )
        else:
            out.missing = (
                "other interpreter configurations (configurations='in-process' was asked for)"
            )
        out.curves.append(_in_process(fn, items, settings, progress))
        return out
    if isinstance(configurations, str):
        configs, out.missing = plan()
    else:
        configs = tuple(configurations)
    with tempfile.TemporaryDirectory(prefix="ftpipe-diagnose-") as tmp:
        inputs_path = os.path.join(tmp, "inputs.pkl")
        try:
            with open(inputs_path, "wb") as f:
                pickle.dump(items, f, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means in-process only
            out.notes.append(f"measured in this process only: the inputs cannot be pickled ({exc})")
            out.missing = "inputs that can be pickled"
            out.curves.append(_in_process(fn, items, settings, progress))
            return out

        def probe(config: Configuration, chosen: SweepSettings = settings) -> Curve:
            return run_probe(
                config,
                target,
                inputs_path,
                chosen,
                main_path=main_path,
                timeout=chosen.budget_s + 25,
                progress=progress,
            )

        for config in configs:
            curve = probe(config)
            out.curves.append(curve)
            if config.role == "no-gil" and config.gil is None and curve.gil_enabled:
                # An import turned the GIL back on: report it, and still measure the
                # code itself without the GIL (at the extension's risk, as CPython says).
                out.notes.append(
                    f"{curve.label}: the GIL came back on; measured again with -X gil=0"
                )
                out.curves.append(probe(forced_off(config)))
        again = _leaned_on(out.curves)
        if again is not None and usable_cores() >= 2:
            k = compared(again, usable_cores())[1].concurrency
            config, chosen = repeat_plan(again, k, settings)
            out.curves.append(replace(probe(config, chosen), repeat_of=again.label))
    if out.curves and all(c.status in ("import-error", "input-error") for c in out.curves):
        # Nowhere else could load it: this process still can, which beats no answer.
        out.notes.append(
            "no other interpreter could load the function or its inputs "
            f"({out.curves[0].message}); measured in this process as well"
        )
        out.curves.append(_in_process(fn, items, settings, progress))
    return out


def _leaned_on(curves: Sequence[Curve]) -> Curve | None:
    """The probed curve the verdict leans on most: without the GIL, else with it."""
    usable = [c for c in curves if c.ok and c.role != "in-process"]
    return next((c for c in usable if c.role == "no-gil" and not c.gil_enabled), None) or next(
        (c for c in usable if c.role in ("gil", "gil-build")), None
    )


def diagnose(
    fn: Callable[..., Any],
    inputs: Iterable[Any],
    *,
    concurrency: Sequence[int] | None = None,
    configurations: str | Sequence[Configuration] = "auto",
    quick: bool = False,
    progress: Callable[[str], None] | None = None,
    stage: str = "",
    trial_executors: bool = True,
) -> Diagnosis:
    """Tell why ``fn`` does (not) scale with threads, and what concurrency / executor to give it.

    Runs ``fn`` over the cached ``inputs`` at concurrency 1, 2, 4, ... (past the core
    count) with plain threads, in a fresh subprocess per interpreter configuration
    (this free-threaded binary as it starts (GIL off) and with ``-X gil=1``, a stock GIL build
    when found), and compares the curves.

    Args:
        fn: A function importable by module and qualified name (anything else, such as
            a lambda or closure, is measured in this process only, and the result says so).
        inputs: Items to call ``fn`` on (cycled through; a few dozen is plenty).
        concurrency: Levels to try (default 1, 2, 4, ... up to twice the usable cores).
        configurations: ``"auto"``, ``"in-process"`` (this process only) or explicit
            :class:`~ftpipe.diagnose.Configuration` objects.
        quick: Shorter measurements (about 20 s in all instead of up to 75 s).
        progress: Called with one line per measurement round.
        stage: A pipeline stage name to carry into reports.
        trial_executors: Run the function through a pipeline on the thread, process
            and interpreter executors (a second or two each) and advise the fastest;
            False keeps the advice the curves alone give.

    Returns:
        The :class:`Diagnosis`.

    Raises:
        TypeError: ``fn`` is not callable, or a concurrency level is not an int.
        ValueError: ``inputs`` is empty, a concurrency level is below 1, or
            ``configurations`` is an unknown string.
    """
    started = time.perf_counter()
    if not callable(fn):
        raise TypeError(f"diagnose() needs a callable, got {type(fn).__name__} {fn!r:.80}")
    items = list(inputs)
    if not items:
        raise ValueError("diagnose() needs at least one input item; got an empty iterable")
    for level in concurrency or ():
        positive_int(level, f"each concurrency level (of {list(concurrency or ())!r})")
    if isinstance(configurations, str) and configurations not in ("auto", "in-process"):
        raise ValueError(
            f"configurations must be 'auto', 'in-process' or Configuration objects, "
            f"got {configurations!r}"
        )
    levels = sorted(set(concurrency or ())) or None
    if levels is not None and 1 not in levels:
        levels = [1, *levels]  # every speedup is relative to one thread
    settings = settings_for(levels, quick=quick)
    # The machine's real parallelism, measured before and after the curves: the ideal
    # they are judged against (see _capacity).
    cal_level = min(usable_cores(), max(settings.levels))
    spin_s, rounds = (0.1, 2) if quick else (0.2, 3)
    capacities = [measure_capacity(cal_level, spin_s, rounds)] if cal_level >= 2 else []
    measured = _measure(fn, items, settings, configurations, progress)
    curves, notes = measured.curves, measured.notes
    if capacities:
        capacities.append(measure_capacity(cal_level, spin_s, rounds))
    got = [c for c in capacities if c is not None]
    # The lower of the two: a machine that got busy during the curves gave them less.
    capacity = Capacity(cal_level, min(got)) if got else None
    if len(got) == 2 and abs(got[0] - got[1]) > 0.2:
        notes.append(
            f"{cal_level} processes ran {got[0]:.2f}x as fast as one before the "
            f"measurement and {got[1]:.2f}x after it: the machine's load changed"
        )
    judge = functools.partial(
        decide,
        curves,
        capacity=capacity,
        cores=usable_cores(),
        here_free_threaded=is_free_threaded(),
        here_gil_off=not gil_enabled(),
        subinterpreters=runtime_info(find_others=False).subinterpreters,
        missing=measured.missing,
    )
    decision = judge()
    trials: tuple[ExecutorTrial, ...] = ()
    window_s = 0.3 if quick else 1.0  # each trial measures WINDOWS such windows
    per_call = min((c.points[0].wall_s_per_item for c in curves if c.ok), default=0.0)
    if trial_executors and per_call > WINDOWS * window_s:
        # A trial waits for a few calls per executor: with calls this slow that is minutes.
        trial_executors = False
        notes.append(
            f"one call takes about {per_call:.1f} s, so the executors were not tried through "
            "a pipeline: the executor advice comes from the curves alone"
        )
    if trial_executors and decision.verdict is not Verdict.INCONCLUSIVE and usable_cores() >= 2:
        # The advice, measured: the same function through a pipeline on each executor.
        trials = run_trials(
            fn,
            items,
            thread_concurrency=decision.best_concurrency,
            pool_concurrency=cal_level,
            window_s=window_s,
            progress=progress,
        )
        decision = judge(trials=trials)
    target = address(fn)[0]
    name = target or repr(fn)
    return Diagnosis(
        function=name,
        stage=stage,
        verdict=decision.verdict,
        explanation=decision.explanation,
        curves=tuple(curves),
        best_concurrency=decision.best_concurrency,
        recommended_executor=decision.advice,
        gil_reenabled_by=tuple(sorted({m for c in curves for m in c.gil_reenabled_by})),
        limited=decision.limited,
        missing=decision.missing,
        notes=tuple(notes) + decision.notes,
        usable_cores=usable_cores(),
        seconds=time.perf_counter() - started,
        interpreter=_label(),
        parallel_capacity=None if capacity is None else capacity.speedup,
        capacity_level=0 if capacity is None else capacity.level,
        executor_trials=trials,
    )
