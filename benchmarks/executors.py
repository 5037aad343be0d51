"""Threads or processes?  Speedup over serial of 2 workers per workload and executor.

Workloads: a pure-Python loop, numpy addition on large arrays, numpy dot,
writing files, waiting on I/O (sleep).  Executors: ftpipe's ThreadExecutor,
InterpreterExecutor (3.13+; numpy refuses subinterpreters) and ProcessExecutor.
Each cell is  serial time / time with 2 workers  for the same tasks, both
measured in this run, interleaved (median of per-repeat ratios); 2.0 is
perfect on 2 cores.

    python benchmarks/executors.py [--quick] [--workers 2]
    python benchmarks/executors.py --all-interpreters [--quick] [--python LABEL=PATH ...]

``--all-interpreters`` re-runs this script under 3.11, 3.13, 3.13t and 3.13t
with PYTHON_GIL=1 (from ~/.cache/ftpipe/bin unless --python overrides a label,
e.g. to point at a venv that has numpy) and prints one table.
BLAS is pinned to one thread so "numpy dot" measures the executor, not OpenBLAS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

_cache: dict[str, Any] = {}


# -- workloads (module level: they cross to processes and subinterpreters by name) ---


def pure_python(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def numpy_add(n: int) -> float:
    import numpy as np

    if "add" not in _cache:
        _cache["add"] = (np.ones(n), np.ones(n))
    a, b = _cache["add"]
    return float((a + b)[0])


def numpy_dot(n: int) -> float:
    import numpy as np

    if "dot" not in _cache:
        _cache["dot"] = np.random.default_rng(0).random((n, n))
    m = _cache["dot"]
    return float((m @ m)[0, 0])


def write_file(nbytes: int) -> int:
    data = b"x" * nbytes
    with tempfile.NamedTemporaryFile(dir=tempfile.gettempdir(), prefix="ftpipe-bench-") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return nbytes


def wait_io(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


# name -> (function, argument, tasks, tasks when --quick, needs numpy)
WORKLOADS: dict[str, tuple[str, Any, int, int, bool]] = {
    "pure-Python loop": ("pure_python", 200_000, 24, 8, False),
    "numpy add (8M)": ("numpy_add", 8_000_000, 24, 8, True),
    "numpy dot (400x400)": ("numpy_dot", 400, 24, 8, True),
    "write file (4 MiB)": ("write_file", 4 << 20, 24, 8, False),
    "wait on I/O (20 ms)": ("wait_io", 0.02, 24, 8, False),
}
EXECUTORS = ("thread", "interpreter", "process")


def _has_numpy() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


def measure(quick: bool, workers: int) -> dict[str, Any]:
    """Return {workload: {"serial_ms": ..., executor: speedup or reason}}."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import executors as here  # this file, importable by name in workers

    import ftpipe
    from ftpipe.executors import subinterpreters_available

    repeats = 3 if quick else 5
    numpy_ok = _has_numpy()
    results: dict[str, Any] = {}
    classes = {
        "thread": ftpipe.ThreadExecutor,
        "interpreter": ftpipe.InterpreterExecutor,
        "process": ftpipe.ProcessExecutor,
    }
    pools: dict[str, Any] = {}
    for kind in EXECUTORS:
        if kind == "interpreter" and not subinterpreters_available():
            continue
        pools[kind] = classes[kind](workers, name=f"bench-{kind}")
    try:
        for label, (fname, arg, tasks, quick_tasks, needs_numpy) in WORKLOADS.items():
            n = quick_tasks if quick else tasks
            fn = getattr(here, fname)
            row: dict[str, Any] = {}
            if needs_numpy and not numpy_ok:
                results[label] = {"serial_ms": None, **{k: "no numpy" for k in EXECUTORS}}
                continue
            fn(arg)  # warm this process's cache
            kinds = [
                k for k in EXECUTORS if k in pools and not (k == "interpreter" and needs_numpy)
            ]
            for kind in kinds:
                list(pools[kind].map(fn, [arg] * (2 * workers)))  # warm every worker
            # Serial and parallel runs interleave, one ratio per repeat, so a burst
            # of load from elsewhere hits both sides of a ratio alike.
            serials: list[float] = []
            ratios: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(repeats):
                serial = _time(_serial, fn, arg, n)
                serials.append(serial)
                for kind in kinds:
                    ratios[kind].append(serial / _time(_parallel, pools[kind], fn, arg, n))
            row["serial_ms"] = statistics.median(serials) / n * 1e3
            for kind in EXECUTORS:
                if kind in ratios:
                    row[kind] = statistics.median(ratios[kind])
                elif kind not in pools:
                    row[kind] = "no subinterpreters"
                else:
                    row[kind] = "numpy refuses"
            results[label] = row
    finally:
        for pool in pools.values():
            pool.shutdown()
    return results


def _serial(fn: Any, arg: Any, n: int) -> None:
    for _ in range(n):
        fn(arg)


def _parallel(pool: Any, fn: Any, arg: Any, n: int) -> None:
    list(pool.map(fn, [arg] * n))


def _time(run: Any, *args: Any) -> float:
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start


def _label() -> str:
    import ftpipe

    info = ftpipe.runtime_info(find_others=False)
    name = f"{sys.version_info.major}.{sys.version_info.minor}"
    if info.free_threaded:
        name += "t" + (" GIL=1" if info.gil_enabled else "")
    return name


def _cell(value: Any) -> str:
    return f"{value:.2f}x" if isinstance(value, float) else str(value)


def print_table(results: dict[str, Any], label: str, workers: int) -> None:
    print(
        f"speedup over serial with {workers} workers on Python {label} (median; {workers}.00x is ideal)"
    )
    print(f"{'workload':<22}{'serial ms/task':>15}" + "".join(f"{k:>20}" for k in EXECUTORS))
    for workload, row in results.items():
        serial = "n/a" if row["serial_ms"] is None else f"{row['serial_ms']:.1f}"
        print(f"{workload:<22}{serial:>15}" + "".join(f"{_cell(row[k]):>20}" for k in EXECUTORS))


def all_interpreters(args: argparse.Namespace) -> int:
    bin_dir = Path.home() / ".cache/ftpipe/bin"
    configs = {
        "3.11": (bin_dir / "python3.11", {}),
        "3.13": (bin_dir / "python3.13", {}),
        "3.13t": (bin_dir / "python3.13t", {"PYTHON_GIL": "0"}),
        "3.13t GIL=1": (bin_dir / "python3.13t", {"PYTHON_GIL": "1"}),
    }
    overrides = dict(item.split("=", 1) for item in args.python)
    src = str(Path(__file__).resolve().parents[1] / "src")
    table: dict[str, dict[str, Any]] = {}
    for label, (python, extra) in configs.items():
        python = Path(overrides.get(label.split()[0], overrides.get(label, python)))
        if not python.exists():
            print(f"skip {label}: {python} not found", file=sys.stderr)
            continue
        env = {
            **os.environ,
            **extra,
            "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        cmd = [str(python), __file__, "--json", "--workers", str(args.workers)] + (
            ["--quick"] if args.quick else []
        )
        print(f"running {label}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            print(f"{label} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        table[label] = json.loads(out.stdout.strip().splitlines()[-1])
    labels = list(table)
    print(f"speedup over serial with {args.workers} workers (median; {args.workers}.00x is ideal)")
    print(f"{'workload':<22}{'executor':<13}" + "".join(f"{lab:>20}" for lab in labels))
    for workload in WORKLOADS:
        for kind in EXECUTORS:
            cells = [_cell(table[lab]["results"][workload][kind]) for lab in labels]
            print(f"{workload:<22}{kind:<13}" + "".join(f"{c:>20}" for c in cells))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer tasks and repeats")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--json", action="store_true", help="print one JSON line (used by --all-interpreters)"
    )
    parser.add_argument("--all-interpreters", action="store_true")
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="interpreter for a label (3.11, 3.13, 3.13t), e.g. a venv with numpy",
    )
    args = parser.parse_args(argv)
    if args.all_interpreters:
        return all_interpreters(args)
    results = measure(args.quick, args.workers)
    if args.json:
        print(json.dumps({"label": _label(), "results": results}))
    else:
        print_table(results, _label(), args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
