"""Per-item cost of process and subinterpreter stages, written one call per item.

Every row is code as a user writes it: a stage function that takes one item,
``.pipe(fn, concurrency=2, executor="process")``, against what the same user
would write instead, measured in the same run, interleaved, repeated (medians):

- small items (identity on ints) through 2 worker processes: ftpipe's pipeline
  against ``multiprocessing.Pool(2).imap(fn, items, chunksize=1)`` and
  ``ProcessPoolExecutor(2).map(fn, items)``; ``ProcessExecutor.map`` and
  ``Pool.imap`` with a chunksize as a second view;
- ~1 ms pure-Python items through 2 worker processes (and 2 subinterpreters,
  where the interpreter has them) against a plain serial loop;
- what one subinterpreter call costs: µs per item through a pipeline stage
  (``executor="interpreter"``, concurrency 1, identity), per ``submit().result()``
  round trip, and per item of ``InterpreterExecutor.map``.

Throughput is timed from each run's first output, once its workers have started
(a pipeline starts its own; ``Pool`` and ``ProcessPoolExecutor`` are created
before and reused).  Starting is its own row: seconds from building a pipeline
to its first output, against creating a ``Pool`` and getting its first result.

    python benchmarks/per_item.py [--quick] [--repeat 5]

Run it under each interpreter to compare (3.11, 3.13, 3.13t):
``~/.cache/ftpipe/bin/python3.13t benchmarks/per_item.py`` with ftpipe importable.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
Run = float  # what each run returns: items per second

# -- stage functions (module level: workers import them by name) ----------------------


def identity(x: Any) -> Any:
    return x


def pure_python(x: int) -> int:
    """About 1 ms of pure Python on the CI machines (holds the GIL)."""
    total = 0
    for i in range(12_000):
        total += (i * x) % 7
    return total


# -- runs: each returns the number of items it moved ----------------------------------


def ftpipe_stage(fn: Callable[[Any], Any], items: list[Any], executor: str, workers: int) -> Run:
    """Items/s of one pipeline, timed from its first output (its workers have started)."""
    import ftpipe

    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(items)
        .pipe(fn, concurrency=workers, executor=executor)
        .add_sink(buffer_size=64)
        .build()
    )
    with pipeline:
        outputs = iter(pipeline)
        next(outputs)
        t0 = time.perf_counter()
        n = sum(1 for _ in outputs)
        return n / (time.perf_counter() - t0)


def timed(run: Callable[[], int]) -> float:
    """Items per second of one run that returns how many items it moved."""
    t0 = time.perf_counter()
    n = run()
    return n / (time.perf_counter() - t0)


def serial(fn: Callable[[Any], Any], items: list[Any]) -> float:
    return timed(lambda: sum(1 for _ in map(fn, items)))


def interleave(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median items/s of each run, repeated round robin so load from elsewhere hits all."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            rates[name].append(run())
    return {name: statistics.median(r) for name, r in rates.items()}


def small_items(here: Any, n: int, repeats: int, workers: int) -> dict[str, float]:
    import ftpipe

    items = list(range(n))
    with (
        mp.get_context("forkserver").Pool(workers) as pool,
        ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver")) as ppe,
        ftpipe.ProcessExecutor(workers) as pex,
    ):
        runs = {
            f"ftpipe pipe(executor='process', concurrency={workers})": lambda: ftpipe_stage(
                here.identity, items, "process", workers
            ),
            f"Pool({workers}).imap(chunksize=1)": lambda: timed(
                lambda: sum(1 for _ in pool.imap(here.identity, items, chunksize=1))
            ),
            f"ProcessPoolExecutor({workers}).map": lambda: timed(
                lambda: sum(1 for _ in ppe.map(here.identity, items))
            ),
            f"ftpipe ProcessExecutor({workers}).map(chunksize=64)": lambda: timed(
                lambda: sum(1 for _ in pex.map(here.identity, items, chunksize=64))
            ),
            f"Pool({workers}).imap(chunksize=64)": lambda: timed(
                lambda: sum(1 for _ in pool.imap(here.identity, items, chunksize=64))
            ),
        }
        for run in runs.values():  # warm up: every worker started, modules imported
            run()
        return interleave(runs, repeats)


def millisecond_items(here: Any, n: int, repeats: int, workers: int) -> dict[str, float]:
    from ftpipe.executors import subinterpreters_available

    items = list(range(n))
    runs = {
        "serial loop": lambda: serial(here.pure_python, items),
        f"ftpipe pipe(executor='process', concurrency={workers})": lambda: ftpipe_stage(
            here.pure_python, items, "process", workers
        ),
    }
    if subinterpreters_available():
        runs[f"ftpipe pipe(executor='interpreter', concurrency={workers})"] = lambda: ftpipe_stage(
            here.pure_python, items, "interpreter", workers
        )
    return interleave(runs, repeats)


def interpreter_cost(here: Any, n: int, repeats: int) -> dict[str, float] | None:
    """Microseconds per identity item on one subinterpreter, three ways."""
    import ftpipe
    from ftpipe.executors import subinterpreters_available

    if not subinterpreters_available():
        return None
    items = list(range(n))
    with ftpipe.InterpreterExecutor(1) as ex:
        ex.submit(here.identity, 0).result()  # started, modules imported

        def round_trips() -> int:
            for i in range(n // 10):
                ex.submit(here.identity, i).result()
            return n // 10

        def mapped() -> int:
            return sum(1 for _ in ex.map(here.identity, items))

        def mapped_chunks() -> int:
            return sum(1 for _ in ex.map(here.identity, items, chunksize=64))

        runs = {
            "pipeline stage (executor='interpreter')": lambda: ftpipe_stage(
                here.identity, items, "interpreter", 1
            ),
            "submit().result() round trip": lambda: timed(round_trips),
            "InterpreterExecutor.map (chunksize=1)": lambda: timed(mapped),
            "InterpreterExecutor.map(chunksize=64)": lambda: timed(mapped_chunks),
        }
        rates = interleave(runs, repeats)
    return {name: 1e6 / rate for name, rate in rates.items()}


def startup(here: Any, repeats: int, workers: int) -> dict[str, float]:
    """Seconds to the first output, workers started from nothing."""

    def ftpipe_first() -> float:
        import ftpipe

        t0 = time.perf_counter()
        pipeline = (
            ftpipe.PipelineBuilder()
            .add_source(range(workers))
            .pipe(here.identity, concurrency=workers, executor="process")
            .add_sink()
            .build()
        )
        with pipeline:
            next(iter(pipeline))
            return time.perf_counter() - t0

    def pool_first() -> float:
        t0 = time.perf_counter()
        with mp.get_context("forkserver").Pool(workers) as pool:
            next(pool.imap(here.identity, range(workers)))
            return time.perf_counter() - t0

    return interleave(
        {
            f"ftpipe pipe(executor='process', concurrency={workers})": ftpipe_first,
            f"Pool({workers}) created, first imap result": pool_first,
        },
        repeats,
    )


def _table(title: str, rates: dict[str, float], base: str, unit: str = "items/s") -> None:
    print(title)
    print(f"  {'':<52}{unit:>12}{'ratio':>10}")
    for name, rate in rates.items():
        print(f"  {name:<52}{rate:>12,.0f}{rate / rates[base]:>9.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer items and repeats")
    parser.add_argument("--repeat", type=int, default=None, help="repeats (default 5, quick 3)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    repeats = args.repeat or (3 if args.quick else 5)
    sys.path.insert(0, str(HERE))
    import per_item as here  # by name: worker processes import it, not __main__
    from executors import _label  # the interpreter label every benchmark prints

    print(f"Python {_label()}, {args.workers} workers, medians of {repeats} interleaved runs")
    small = small_items(here, 20_000 if args.quick else 60_000, repeats, args.workers)
    _table(
        "small items (identity on ints), items/s; ratio against Pool.imap(chunksize=1):",
        small,
        f"Pool({args.workers}).imap(chunksize=1)",
    )
    ms = millisecond_items(here, 300 if args.quick else 1_000, repeats, args.workers)
    _table("~1 ms pure-Python items, items/s; ratio against the serial loop:", ms, "serial loop")
    first = startup(here, repeats, args.workers)
    print("starting: seconds from nothing to the first output")
    for name, seconds in first.items():
        print(f"  {name:<52}{seconds:>10.3f} s")
    cost = interpreter_cost(here, 5_000 if args.quick else 20_000, repeats)
    if cost is None:
        print("subinterpreter cost: this Python has no subinterpreters")
    else:
        print("one subinterpreter, identity: µs per item (target <= 50)")
        for name, us in cost.items():
            print(f"  {name:<52}{us:>10.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
