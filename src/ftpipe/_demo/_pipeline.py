"""The pipeline comparison: one small pipeline on 1 thread, then on 2 workers of each executor.

The demo starts this module under each interpreter configuration; it prints one
JSON line (:func:`pipeline_timings`) and the demo reads the last line of stdout::

    python [-X gil=0|1] -m ftpipe._demo._pipeline [--quick]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

from .._engine import PipelineBuilder
from .._runtime import gil_enabled, is_free_threaded
from ..executors import (
    InterpreterExecutor,
    ProcessExecutor,
    ThreadExecutor,
    subinterpreters_available,
)
from ._workloads import pure_python

__all__ = ["PIPE_ITEMS", "PIPE_WORKERS", "parse", "pipeline_timings"]

PIPE_ITEMS = 64
PIPE_WORKERS = 2


def parse(item: int) -> int:
    """A light first stage (runs on the engine's threads)."""
    return item


def _run_once(executor: Any, concurrency: int, items: int) -> float:
    pipeline = (
        PipelineBuilder()
        .add_source(range(items))
        .pipe(parse)
        .pipe(pure_python, concurrency=concurrency, executor=executor)
        .add_sink(buffer_size=8)
        .build()
    )
    started = time.perf_counter()
    with pipeline:
        count = sum(1 for _ in pipeline)
    elapsed = time.perf_counter() - started
    if count != items:
        raise RuntimeError(f"the pipeline delivered {count} items instead of {items}")
    return elapsed


def pipeline_timings(quick: bool = False) -> dict[str, Any]:
    """Time the same pipeline with 1 thread worker and with 2 workers of each executor kind.

    The executors are created and warmed first and handed to the pipeline, so the
    figures are steady-state throughput; their start-up time is reported apart.
    Each executor run is paired with a serial run just before it; the speedup is the
    median of the pairs' ratios (on a shared machine a noisy moment then skews one
    pair, not the baseline of every figure).

    Returns:
        ``{"serial_s": ..., "kinds": {kind: {"seconds", "speedup", "startup_s"} or
        {"error": why}}}`` plus facts about the interpreter.
    """
    items = PIPE_ITEMS // 2 if quick else PIPE_ITEMS
    repeats = 2
    classes = {
        "thread": ThreadExecutor,
        "interpreter": InterpreterExecutor,
        "process": ProcessExecutor,
    }
    kinds: dict[str, Any] = {}
    pools: dict[str, Any] = {}
    try:
        for kind, cls in classes.items():
            if kind == "interpreter" and not subinterpreters_available():
                kinds[kind] = {"error": "no subinterpreters on this Python (3.13+ needed)"}
                continue
            started = time.perf_counter()
            try:
                pool = cls(PIPE_WORKERS, name=f"demo-{kind}")
                pools[kind] = pool
                list(pool.map(pure_python, range(2 * PIPE_WORKERS)))  # start every worker
            except Exception as exc:  # noqa: BLE001 - the demo reports any failure and goes on
                kinds[kind] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}
                pools.pop(kind, None)
                continue
            kinds[kind] = {"startup_s": time.perf_counter() - started, "runs": [], "ratios": []}
        # Paired: each executor run is compared with a serial run just before it, so a
        # noisy moment on a shared machine skews one ratio, not every figure.
        serial: list[float] = []
        for _ in range(repeats):
            for kind, pool in pools.items():
                if "runs" not in kinds[kind]:
                    continue
                one = _run_once(None, 1, items)
                serial.append(one)
                try:
                    t = _run_once(pool, PIPE_WORKERS, items)
                except Exception as exc:  # noqa: BLE001
                    kinds[kind] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
                    continue
                kinds[kind]["runs"].append(t)
                kinds[kind]["ratios"].append(one / t)
    finally:
        for pool in pools.values():
            pool.shutdown()
    if not serial:
        serial.append(_run_once(None, 1, items))
    best = min(serial)
    for cell in kinds.values():
        if "runs" in cell:
            cell["seconds"] = min(cell["runs"])
            cell["speedup"] = statistics.median(cell["ratios"])
    return {
        "version": ".".join(map(str, sys.version_info[:3])),
        "free_threaded": is_free_threaded(),
        "gil_enabled": gil_enabled(),
        "items": items,
        "workers": PIPE_WORKERS,
        "serial_s": best,
        "kinds": kinds,
    }


def _main(argv: list[str]) -> int:
    if any(arg != "--quick" for arg in argv):
        print("usage: python -m ftpipe._demo._pipeline [--quick]", file=sys.stderr)
        return 2
    print(json.dumps(pipeline_timings(quick="--quick" in argv)))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
