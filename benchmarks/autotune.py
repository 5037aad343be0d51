"""concurrency="auto" against the best static setting of a grid, and against the default.

Each pipeline is written the way a user would, then run three ways, each for the same
wall time from a cold start (pool start-up and the tuner's convergence included):

- **auto**: every pipe stage ``concurrency="auto"`` (and ``executor="auto"``);
- **grid best**: every combination of static concurrencies in the grid (and, on a GIL
  build, thread or process for the stage that computes), the fastest of them;
- **default**: ``concurrency=1`` on threads, what a user gets without choosing.

Pipelines:

- ``compute+wait``: a pure-Python stage (about 0.5 ms) then a 3 ms wait (a device, I/O);
- ``lock``: a stage whose work runs under one module-level lock (more threads cannot help);
- ``wait``: a 10 ms wait alone (more threads than cores help);
- ``loader``: the per-sample loader of ``vs_dataloader.py`` (needs numpy): read and decode
  one sample per call, batches of 32.

Every figure is outputs per second over the run, the median of ``--repeat`` runs; the
ratios are auto / grid best (target >= 0.9) and auto / default (>= 1.5 where the grid's
best is >= 2x the default; never below 0.95).

    python benchmarks/autotune.py [--seconds 10] [--repeat 3] [--grid-seconds 3] [--quick]
                                  [--only NAME ...]

The grid's runs are shorter (``--grid-seconds``): they only pick the best static
setting, which then runs for the full time beside auto and the default.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ftpipe
from ftpipe._runtime import gil_enabled, is_free_threaded

HERE = Path(__file__).resolve().parent


# -- stage functions (module level: a process executor imports them by name) -----------


def compute(x: int) -> int:
    """About 0.5 ms of pure Python."""
    total = 0
    for i in range(6000):
        total += (i * x) % 7
    return total


def device_wait(x: int) -> int:
    time.sleep(0.003)
    return x


_lock = threading.Lock()


def locked(x: int) -> int:
    with _lock:  # one lock for every thread: the work is serialized whatever the concurrency
        total = 0
        for i in range(3000):
            total += (i * x) % 7
    return total


def long_wait(x: int) -> int:
    time.sleep(0.010)
    return x


@dataclass(frozen=True)
class Stage:
    fn: Callable[[Any], Any]
    grid: tuple[int, ...]
    computes: bool = False  # on a GIL build the grid also tries the process executor


@dataclass(frozen=True)
class Workload:
    name: str
    source: Callable[[], Iterable[Any]]
    stages: tuple[Stage, ...]
    tail: Callable[[ftpipe.PipelineBuilder], ftpipe.PipelineBuilder] = lambda b: b


def _endless() -> Iterable[int]:
    return itertools.count()


def _workloads(quick: bool) -> list[Workload]:
    small = (1, 2, 4) if quick else (1, 2, 4, 8)
    waits = (1, 4, 16) if quick else (1, 4, 8, 16, 32)
    out = [
        Workload(
            "compute+wait",
            _endless,
            (Stage(compute, small, computes=True), Stage(device_wait, waits)),
        ),
        Workload("lock", _endless, (Stage(locked, small, computes=True),)),
        Workload("wait", _endless, (Stage(long_wait, (1, 4, 16, 32, 64)),)),
    ]
    try:
        sys.path.insert(0, str(HERE))
        import vs_dataloader as vd  # needs numpy
    except ImportError:
        return out
    path = Path(tempfile.gettempdir()) / "ftpipe-autotune-records.bin"
    if not Path(str(path) + ".idx.npy").exists():
        vd.write_records(path, 512)
    ds = vd.records(str(path))
    n = len(ds)
    out.append(
        Workload(
            "loader",
            lambda: (i % n for i in itertools.count()),
            (Stage(ds.__getitem__, small, computes=True),),
            tail=lambda b: b.aggregate(vd.BATCH).pipe(vd.stack),
        )
    )
    return out


def _run(w: Workload, settings: list[tuple[Any, Any]], seconds: float) -> float:
    """Outputs per second of ``w`` with ``settings[i] = (concurrency, executor)`` per stage."""
    builder = ftpipe.PipelineBuilder().add_source(w.source())
    for stage, (concurrency, executor) in zip(w.stages, settings, strict=True):
        builder.pipe(stage.fn, concurrency=concurrency, executor=executor)
    builder = w.tail(builder).add_sink()
    started = time.perf_counter()
    deadline = started + seconds
    n = 0
    with builder.build() as pipeline:
        for _ in pipeline:
            n += 1
            if time.perf_counter() >= deadline:
                break
    return n / (time.perf_counter() - started)


def _grid(w: Workload) -> list[list[tuple[Any, Any]]]:
    executors_for: list[tuple[Any, ...]] = []
    for s in w.stages:
        gil_build = not (is_free_threaded() and not gil_enabled())
        executors_for.append((None, "process") if s.computes and gil_build else (None,))
    per_stage = [[(c, e) for c in s.grid for e in executors_for[i]] for i, s in enumerate(w.stages)]
    return [list(combo) for combo in itertools.product(*per_stage)]


def _label(settings: list[tuple[Any, Any]]) -> str:
    return " ".join(f"{c}{'' if e is None else '/' + str(e)[:4]}" for c, e in settings)


def measure(w: Workload, seconds: float, repeat: int, grid_seconds: float) -> dict[str, Any]:
    auto = [("auto", "auto")] * len(w.stages)
    default = [(1, None)] * len(w.stages)
    # The grid first, briefly, to find its best; then auto, the best and the default
    # interleaved for the full time, so a noisy moment hits all three.
    grid = {_label(s): (_run(w, s, grid_seconds), s) for s in _grid(w)}
    best_label, (_, best) = max(grid.items(), key=lambda kv: kv[1][0])
    rates: dict[str, list[float]] = {"auto": [], "best": [], "default": []}
    for _ in range(repeat):
        rates["auto"].append(_run(w, auto, seconds))
        rates["best"].append(_run(w, best, seconds))
        rates["default"].append(_run(w, default, seconds))
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"workload": w.name, "best_label": best_label, **med}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="wall time of each run")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="2 s runs, a smaller grid, 1 repeat")
    p.add_argument("--only", nargs="*", default=None, help="workload names to run")
    p.add_argument(
        "--grid-seconds", type=float, default=None, help="wall time of each grid run (default 3)"
    )
    args = p.parse_args(argv)
    seconds, repeat = (2.0, 1) if args.quick else (args.seconds, args.repeat)
    grid_seconds = args.grid_seconds or min(seconds, 1.0 if args.quick else 3.0)
    label = ".".join(map(str, sys.version_info[:2])) + ("t" if is_free_threaded() else "")
    gil = "GIL on" if gil_enabled() else "GIL off"
    print(f"# autotune on {label} ({gil}): {seconds:.0f} s per run, median of {repeat}")
    header = f"{'pipeline':<14}{'auto/s':>10}{'grid best/s':>13}{'default/s':>11}"
    print(header + f"{'auto/best':>11}{'auto/default':>14}  grid best")
    for w in _workloads(args.quick):
        if args.only and w.name not in args.only:
            continue
        r = measure(w, seconds, repeat, grid_seconds)
        print(
            f"{r['workload']:<14}{r['auto']:>10.1f}{r['best']:>13.1f}{r['default']:>11.1f}"
            f"{r['auto'] / r['best']:>10.2f}x{r['auto'] / r['default']:>13.2f}x  {r['best_label']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
