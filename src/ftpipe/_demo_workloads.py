"""The demo's battery: the classic threads-vs-processes workloads, and a pipeline timing.

Every function here is module-level so it crosses to probe subprocesses,
subinterpreters and worker processes by name.  This module imports nothing
outside the standard library at import time: the demo runs it under bare
interpreters (no numpy), where only the numpy workloads fail, and say so.

Run as a script it times one small pipeline on every executor kind and prints
one JSON line; the demo starts it under each interpreter configuration::

    python [-X gil=0|1] -m ftpipe._demo_workloads pipeline [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "WORKLOADS",
    "Workload",
    "numpy_add",
    "numpy_dot",
    "pipeline_timings",
    "pure_python",
    "wait_io",
    "write_file",
]

# Sizes chosen so one call takes a few milliseconds here: long enough that thread
# hand-offs do not dominate, short enough for many calls per measurement window.
LOOP_N = 40_000
ADD_N = 2_000_000  # float64: two 16 MB operands and a 16 MB result, far past the caches
DOT_N = 256
FILE_BYTES = 1 << 20
WAIT_S = 0.005

# Read-only after creation; created at most a few times if threads race on the first
# call, which is harmless (setdefault keeps one), so no lock is needed.
_arrays: dict[str, Any] = {}
_payload: dict[str, bytes] = {}


def pure_python(item: int) -> int:
    """A pure-Python loop: serialized by the GIL, parallel without it."""
    total = item
    for i in range(LOOP_N):
        total += i * i % 7
    return total


def numpy_add(item: int) -> float:
    """Add two large float64 arrays: numpy releases the GIL, then memory bandwidth limits."""
    import numpy as np

    if "add" not in _arrays:
        _arrays.setdefault("add", (np.ones(ADD_N), np.full(ADD_N, float(item))))
    a, b = _arrays["add"]
    return float((a + b)[-1])


def numpy_dot(item: int) -> float:
    """Multiply two matrices: BLAS may already use every core for one call."""
    import numpy as np

    if "dot" not in _arrays:
        _arrays.setdefault("dot", np.random.default_rng(0).random((DOT_N, DOT_N)))
    m = _arrays["dot"]
    return float((m @ m)[item % DOT_N, 0])


def write_file(item: int) -> int:
    """Write 1 MiB to a new file in the temp directory and remove it (page cache, no fsync)."""
    data = _payload.get("data")
    if data is None:
        data = _payload.setdefault("data", os.urandom(FILE_BYTES))
    fd, path = tempfile.mkstemp(prefix="ftpipe-demo-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    finally:
        os.unlink(path)
    return len(data) + item * 0


def wait_io(item: int) -> int:
    """Wait 5 ms without using the CPU, as a network or disk request would."""
    time.sleep(WAIT_S)
    return item


class Workload:
    """One row of the demo: a function, its inputs, and whether it needs numpy."""

    def __init__(self, key: str, title: str, fn: Callable[[int], Any], needs_numpy: bool) -> None:
        self.key = key
        self.title = title
        self.fn = fn
        self.needs_numpy = needs_numpy
        self.inputs = list(range(8))


WORKLOADS = (
    Workload("pure-python", "pure-Python loop", pure_python, False),
    Workload("numpy-add", "numpy add (2M float64)", numpy_add, True),
    Workload("numpy-dot", f"numpy dot ({DOT_N}x{DOT_N})", numpy_dot, True),
    Workload("write-file", "write files (1 MiB)", write_file, False),
    Workload("wait-io", "wait on I/O (5 ms)", wait_io, False),
)


# --- the pipeline comparison ------------------------------------------------------------

PIPE_ITEMS = 64
PIPE_WORKERS = 2


def parse(item: int) -> int:
    """A light first stage (runs on the engine's threads)."""
    return item


def _subinterpreters() -> bool:
    from .executors import subinterpreters_available

    return bool(subinterpreters_available())


def _run_once(executor: Any, concurrency: int, items: int) -> float:
    from . import PipelineBuilder

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
    from . import InterpreterExecutor, ProcessExecutor, ThreadExecutor
    from ._runtime import gil_enabled, is_free_threaded

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
            if kind == "interpreter" and not _subinterpreters():
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
    if not argv or argv[0] != "pipeline":
        print("usage: python -m ftpipe._demo_workloads pipeline [--quick]", file=sys.stderr)
        return 2
    # Run from the imported module, not __main__: workers find functions by module name.
    from ftpipe import _demo_workloads

    print(json.dumps(_demo_workloads.pipeline_timings(quick="--quick" in argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
