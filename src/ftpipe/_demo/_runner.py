"""The demo's measurements: the battery through the detector, then the pipeline comparison.

Interpreters other than this one are usually bare (no numpy): the numpy rows say
"no numpy" there rather than fail; ``--python PATH`` adds or replaces one (a
virtual environment's ``python`` keeps its packages).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from .._runtime import usable_cores
from ..diagnose import Configuration, diagnose
from ._interpreters import NO_FREE_THREADED, child_env, configurations, has_numpy
from ._model import DemoResult, Row
from ._progress import Progress
from ._schedule import PIPELINE_MIN_S, Schedule, busy_note, probes
from ._workloads import WORKLOADS, Workload

__all__ = ["run_demo"]


def _diagnose_row(
    workload: Workload,
    configs: Sequence[Configuration],
    quick: bool,
    progress: Progress,
    left_out: Sequence[Configuration] = (),
) -> Row:
    skipped = {c.label: "out of time" for c in left_out}
    usable = []
    for config in configs:
        if workload.needs_numpy and not has_numpy(config.executable):
            skipped[config.label] = "no numpy"
        else:
            usable.append(config)
    if not usable:
        return Row(workload, None, skipped, "numpy is not installed in any interpreter")
    try:
        d = diagnose(
            workload.fn,
            workload.inputs,
            configurations=usable,
            quick=quick,
            progress=progress.line,
            stage=workload.title,
        )
    except Exception as exc:  # noqa: BLE001 - one broken row must not sink the demo
        return Row(workload, None, skipped, f"{type(exc).__name__}: {exc}")
    return Row(workload, d, skipped)


def _pipeline(config: Configuration, quick: bool, timeout: float) -> dict[str, Any]:
    """Run ``ftpipe._demo._pipeline`` under ``config``; its JSON line, or ``{"error": why}``."""
    # Not config.argv: that starts the detector's probe module, not the pipeline.
    argv = [config.executable]
    if config.gil is not None:
        argv += ["-X", f"gil={config.gil}"]
    argv += ["-m", "ftpipe._demo._pipeline"] + (["--quick"] if quick else [])
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=child_env(), check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    if done.returncode != 0 or not done.stdout.strip():
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return {"error": tail[:200]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _pipelines(
    configs: Sequence[Configuration], quick: bool, schedule: Schedule, progress: Progress
) -> dict[str, dict[str, Any]]:
    # The pipeline comparison runs on the free-threaded pair and the newest stock build:
    # the older stock builds add nothing (no subinterpreters before 3.13).
    # In order of interest, should time run out: free-threaded without the GIL, the
    # newest stock build, then the free-threaded build with the GIL forced on.
    stock = [c for c in configs if c.role == "gil-build"][:1]
    wanted = [c for c in configs if c.role == "no-gil"] + stock
    wanted += [c for c in configs if c.role == "gil"]
    results: dict[str, dict[str, Any]] = {}
    for n, config in enumerate(wanted, 1):
        left = schedule.left()
        if left < PIPELINE_MIN_S:
            results[config.label] = {"error": "skipped: the demo ran out of its time budget"}
            continue
        progress.stage(f"pipeline [{n}/{len(wanted)}] {config.label}")
        results[config.label] = _pipeline(config, quick, timeout=left)
        progress.done(f"pipeline on {config.label}: done")
    return results


def run_demo(
    *,
    quick: bool = False,
    pythons: Sequence[str] = (),
    workloads: Sequence[str] | None = None,
    pipelines: bool = True,
    progress: Progress | None = None,
) -> DemoResult:
    """Measure the battery and the pipeline comparison; see the package docstring.

    Args:
        quick: Shorter measurements and fewer configurations.
        pythons: Extra interpreters (paths), e.g. virtual environments with numpy.
        workloads: Keys of the workloads to run (all when None).
        pipelines: Also run the pipeline comparison.
        progress: Where progress goes (stderr by default).

    Raises:
        ValueError: A path in ``pythons`` is not a runnable Python interpreter.
    """
    busy = busy_note()
    schedule = Schedule(quick, busy=bool(busy))
    progress = progress or Progress()
    configs = configurations(pythons, quick=quick)
    chosen = [w for w in WORKLOADS if workloads is None or w.key in workloads]
    if not any(c.free_threaded for c in configs):
        schedule.notes.append(NO_FREE_THREADED)
    rows = []
    for n, workload in enumerate(chosen, 1):
        progress.stage(f"[{n}/{len(chosen)}] {workload.title}")
        short, chosen_configs = schedule.plan(workload.title, chosen[n - 1 :], configs)
        began = time.perf_counter()
        left_out = [c for c in configs if c not in chosen_configs]
        row = _diagnose_row(workload, chosen_configs, short, progress, left_out)
        schedule.record(short, probes(workload, chosen_configs), time.perf_counter() - began)
        verdict = row.diagnosis.verdict.value if row.diagnosis else row.error
        progress.done(f"{workload.title}: {verdict}")
        rows.append(row)
    results = _pipelines(configs, quick, schedule, progress) if pipelines else {}
    if busy:
        schedule.notes.insert(0, busy)
    return DemoResult(
        tuple(configs),
        tuple(rows),
        results,
        usable_cores(),
        time.perf_counter() - schedule.started,
        quick,
        tuple(schedule.notes),
    )
