"""Functions whose cause of (non-)scaling is known, for the contention detector's tests.

Each takes one cached input item and is sized to take about a millisecond or two
on this machine, so a short measurement window still sees hundreds of calls.
Importable by module name so the probes in other interpreters can find them.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from typing import Any

_LOCK = threading.Lock()
# Deliberately shared by every worker: the point of shared_dict is contention on it.
_SHARED: dict[int, int] = {}


def pure_python(n: int) -> int:
    """CPU-bound pure Python: parallel only without the GIL (gil-bound)."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def json_roundtrip(doc: Any) -> int:
    """json encode + decode: holds the GIL throughout (gil-bound)."""
    return len(json.loads(json.dumps(doc)))


def hash_buffer(buf: bytes) -> str:
    """sha256 of a large buffer: hashlib releases the GIL (scales)."""
    return hashlib.sha256(buf).hexdigest()


def locked_loop(n: int) -> int:
    """Pure Python under one shared lock: threads queue on it (blocking-contention)."""
    with _LOCK:
        return pure_python(n)


def shared_dict(n: int) -> int:
    """Every worker hammers the same dict: per-object locking and refcounts without the GIL."""
    d = _SHARED
    for i in range(n):
        k = i & 15
        d[k] = d.get(k, 0) + 1
    return len(d)


def numpy_matmul(a: Any) -> float:
    """A BLAS matmul that already uses every core (internally-parallel)."""
    return float((a @ a)[0, 0])


def sleepy(seconds: float) -> float:
    """Waits without holding the GIL, like I/O (scales, even past the core count)."""
    time.sleep(seconds)
    return seconds


def seeded_noise(n: int) -> float:
    """An augmentation seeded per item with ftpipe.item_seed(), as the docs advise."""
    import ftpipe

    rng = random.Random(ftpipe.item_seed())
    return sum(rng.random() for _ in range(n))


def failing(x: Any) -> Any:
    """Always raises, to test error reporting."""
    raise ValueError(f"bad item {x!r}")


# --- inputs (zero-argument callables, as `--inputs MODULE:ATTR` accepts) --------------


def pure_python_inputs() -> list[int]:
    return [20_000] * 8


def json_inputs() -> list[Any]:
    doc = {
        "id": 1,
        "tags": ["a", "b", "c"],
        "values": list(range(60)),
        "nested": {"x": 1.5, "y": "z" * 20},
    }
    return [[doc] * 12 for _ in range(8)]


def hash_inputs() -> list[bytes]:
    return [bytes(range(256)) * (4 * 1024 * 4)] * 2  # 4 MiB each


def locked_inputs() -> list[int]:
    return [20_000] * 8


def shared_dict_inputs() -> list[int]:
    return [10_000] * 8


def numpy_inputs() -> list[Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    return [rng.random((384, 384)) for _ in range(2)]


def sleepy_inputs() -> list[float]:
    return [0.002] * 8


# --- the battery: `python tests/diagnose_workloads.py [--quick]` prints the verdict table --------

BATTERY = (
    ("pure_python", pure_python_inputs, "gil-bound"),
    ("json_roundtrip", json_inputs, "gil-bound"),
    ("hash_buffer", hash_inputs, "scales"),
    ("locked_loop", locked_inputs, "blocking-contention"),
    ("shared_dict", shared_dict_inputs, "ft-regression"),
    ("numpy_matmul", numpy_inputs, "internally-parallel"),
    ("sleepy", sleepy_inputs, "scales"),
)


def _battery(argv: list[str]) -> int:
    import sys

    from ftpipe.diagnose import diagnose

    quick = "--quick" in argv
    only = [a for a in argv if not a.startswith("-")]
    print(
        f"{'function':16} {'expected':20} {'verdict':20} {'seconds':>7}  speedup at 2 threads per configuration"
    )
    for name, make_inputs, expected in BATTERY:
        if only and name not in only:
            continue
        d = diagnose(globals()[name], make_inputs(), quick=quick)
        speedups = "; ".join(
            f"{c.label} {c.points[1].items_per_s / c.points[0].items_per_s:.2f}x"
            if c.ok
            else f"{c.label} {c.status}"
            for c in d.curves
        )
        print(
            f"{name:16} {expected:20} {d.verdict.value:20} {d.seconds:7.1f}  {speedups}", flush=True
        )
        if "-v" in argv:
            print("    " + d.explanation, file=sys.stderr)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_battery(sys.argv[1:]))
