"""The demo's battery: the classic threads-vs-processes workloads, one row of the table each.

Every function here is module-level so it crosses to probe subprocesses,
subinterpreters and worker processes by name.  This module imports nothing
outside the standard library at import time: the demo runs it under bare
interpreters (no numpy), where only the numpy workloads fail, and say so.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "WORKLOADS",
    "Workload",
    "numpy_add",
    "numpy_dot",
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
