"""Engine overhead: a 3-stage no-op pipeline, items/s, against same-run baselines.

The pipeline is built as a user would (``inline=True``, the default: the consumer's
thread runs its calls until they prove slow).  Baselines,
measured in the same process right beside it:
  * the same pipeline kept on threads (``inline=False``: the engine's hand-offs),
  * ftpipe with the three calls folded into one stage,
  * the same three calls per item in a plain loop, in one thread (no engine at all),
  * a hand-written chain of ``queue.Queue`` with one thread per stage,
  * ``concurrent.futures.ThreadPoolExecutor.map`` applied three times (chunks),
  * SPDL's ``PipelineBuilder`` (``pip install spdl-core``), when installed.

Each figure is the median of ``--repeat`` runs.  ``--hogs N`` starts N busy-looping
processes beside the benchmark (the machine a training job really runs on) and
kills them at the end; ftpipe is then measured idle first, in the same run, and
the ratio and the spread of single runs (min / median / max) say how much slower
and how steady it is with the hogs.  By default the hogs are children of the
benchmark, in its session; ``--hog-session own`` starts each in a session of its
own, as other jobs and services are (with the kernel's autogroup, each session
shares the CPU as one group: see docs/free-threading.md, "A busy machine").  Each
of those rows also says how many cores the benchmark's process used (its CPU time
over the wall time, median of the runs).  ``--quiet-yields`` (an experiment, Linux)
turns ``sched_yield`` into a no-op (``_quiet_yields.py``): for every thread of the
benchmark (``all``, the default), for the thread that consumes the pipeline only
(``consumer``), or for the threads the pipeline starts only (``engine``).

    python benchmarks/engine_overhead.py [--items 100000] [--repeat 5] [--hogs 0]
                                         [--hog-session same|own]
                                         [--quiet-yields [all|consumer|engine]]
                                         [--buffer-size 64] [--quick]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import ftpipe

T = TypeVar("T")


def noop(x: int) -> int:
    return x


BUFFER_SIZE = 64  # every stage's buffer and the sink's (--buffer-size)


def noop3(x: int) -> int:
    return noop(noop(noop(x)))


def noop_pipeline(
    n: int, stages: tuple[Callable[[int], int], ...] = (noop,) * 3, *, inline: bool = True
) -> ftpipe.Pipeline:
    builder = ftpipe.PipelineBuilder(inline=inline).add_source(range(n))
    for fn in stages:
        builder.pipe(fn, buffer_size=BUFFER_SIZE)
    return builder.add_sink(buffer_size=BUFFER_SIZE).build()


def run_ftpipe(n: int) -> int:
    with noop_pipeline(n) as pipeline:
        return sum(1 for _ in pipeline)


def run_ftpipe_threads(n: int) -> int:
    """The 3-stage pipeline kept on threads (inline=False): the engine's hand-offs."""
    with noop_pipeline(n, inline=False) as pipeline:
        return sum(1 for _ in pipeline)


def run_ftpipe_folded(n: int) -> int:
    """The same three calls in one stage: one engine thread fewer per call folded."""
    with noop_pipeline(n, (noop3,)) as pipeline:
        return sum(1 for _ in pipeline)


def in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` run in a thread of its own (its result, or its exception)."""
    box: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


def run_ftpipe_quiet_consumer(n: int) -> int:
    """The pipeline's threads start from here; only the consuming thread drops its yields."""
    from _quiet_yields import install

    with noop_pipeline(n) as pipeline:

        def consume() -> int:
            install()  # this thread only: it starts nothing
            return sum(1 for _ in pipeline)

        return in_thread(consume)


def run_ftpipe_quiet_engine(n: int) -> int:
    """The pipeline starts from a thread without yields (its threads inherit that); this
    thread consumes it, yields as usual."""
    from _quiet_yields import install

    def start() -> ftpipe.Pipeline:
        install()
        pipeline = noop_pipeline(n)
        pipeline.start()
        return pipeline

    with in_thread(start) as pipeline:
        return sum(1 for _ in pipeline)


def run_queue_chain(n: int) -> int:
    end = object()
    queues: list[queue.Queue[object]] = [queue.Queue(maxsize=64) for _ in range(4)]

    def source() -> None:
        for i in range(n):
            queues[0].put(i)
        queues[0].put(end)

    def stage(q_in: queue.Queue[object], q_out: queue.Queue[object]) -> None:
        while (item := q_in.get()) is not end:
            q_out.put(noop(item))  # type: ignore[arg-type]
        q_out.put(end)

    threads = [threading.Thread(target=source)]
    threads += [threading.Thread(target=stage, args=(queues[i], queues[i + 1])) for i in range(3)]
    for t in threads:
        t.start()
    count = 0
    while queues[3].get() is not end:
        count += 1
    for t in threads:
        t.join()
    return count


def run_plain_loop(n: int) -> int:
    """The same three calls per item in one thread: no engine, no hand-offs."""
    count = 0
    for x in range(n):
        noop(noop(noop(x)))
        count += 1
    return count


def run_thread_pool(n: int) -> int:
    with ThreadPoolExecutor(3) as pool:
        items = pool.map(
            noop,
            pool.map(noop, pool.map(noop, range(n), chunksize=256), chunksize=256),
            chunksize=256,
        )
        return sum(1 for _ in items)


def run_spdl(n: int) -> int:
    from spdl.pipeline import PipelineBuilder

    builder = PipelineBuilder().add_source(range(n))
    for _ in range(3):
        builder = builder.pipe(noop)
    pipeline = builder.add_sink(64).build(num_threads=3)
    with pipeline.auto_stop():
        return sum(1 for _ in pipeline.get_iterator(timeout=60))


def spdl_available() -> bool:
    try:
        import spdl.pipeline  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def hogs_running(count: int, *, own_session: bool = False) -> Iterator[None]:
    """``count`` busy-looping processes beside the block, killed when it ends."""
    code = "while True: pass"
    hogs = [
        subprocess.Popen([sys.executable, "-c", code], start_new_session=own_session)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def rates(
    fn: Callable[[int], int], n: int, repeat: int, cores: list[float] | None = None
) -> list[float]:
    """Items/s of ``repeat`` runs of ``fn``; appends each run's cores used to ``cores``."""
    out = []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        got = fn(n)
        elapsed = time.perf_counter() - t0
        assert got == n, f"{fn.__name__} delivered {got} of {n} items"
        out.append(n / elapsed)
        if cores is not None:
            cores.append((time.process_time() - c0) / elapsed)
    return out


def measure(fn: Callable[[int], int], n: int, repeat: int) -> float:
    return statistics.median(rates(fn, n, repeat))


def spread(runs: list[float]) -> str:
    return f"min {min(runs):,.0f} / median {statistics.median(runs):,.0f} / max {max(runs):,.0f}"


def idle_against_hogs(name: str, idle: list[float], loaded: list[float], hogs: int) -> str:
    """One baseline's runs idle and beside the hogs, and idle / hogs (medians)."""
    slower = statistics.median(idle) / statistics.median(loaded)
    return f"  {name:<24} {spread(idle)} items/s; with {hogs} hogs {spread(loaded)}: {slower:.2f}x"


def main(argv: list[str] | None = None) -> int:
    global BUFFER_SIZE
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--hogs", type=int, default=0, help="busy-looping processes to run beside it"
    )
    parser.add_argument(
        "--hog-session",
        choices=("same", "own"),
        default="same",
        help="the hogs share the benchmark's session (default) or each has its own",
    )
    parser.add_argument(
        "--quiet-yields",
        nargs="?",
        const="all",
        choices=("all", "consumer", "engine"),
        help="an experiment: sched_yield is a no-op for every thread (all, the default), "
        "the consuming thread only, or the pipeline's threads only (_quiet_yields.py)",
    )
    parser.add_argument(
        "--buffer-size",
        type=int,
        default=BUFFER_SIZE,
        help=f"ftpipe's stage and sink buffers (default {BUFFER_SIZE}, the engine's default)",
    )
    parser.add_argument("--quick", action="store_true", help="20k items, 3 repeats")
    args = parser.parse_args(argv)
    BUFFER_SIZE = args.buffer_size
    if args.quiet_yields == "all":
        from _quiet_yields import install

        install()  # first: every thread started from here on inherits it
    ours_fn = {
        "consumer": run_ftpipe_quiet_consumer,
        "engine": run_ftpipe_quiet_engine,
    }.get(args.quiet_yields or "", run_ftpipe)
    n, repeat = (20_000, 3) if args.quick else (args.items, args.repeat)
    info = ftpipe.runtime_info(find_others=False)
    where = f" ({args.hog_session} session)" if args.hogs else ""
    if args.quiet_yields:
        where += f"; sched_yield a no-op (--quiet-yields {args.quiet_yields})"
    print(
        f"engine_overhead: 3 no-op stages, buffers of {BUFFER_SIZE}, {n} items, "
        f"median of {repeat}; "
        f"Python {info.version} ({info.gil_summary}); {args.hogs} CPU hogs beside it{where}"
    )
    idle_cores: list[float] = []
    loaded_cores: list[float] = []
    idle = rates(ours_fn, n, repeat, idle_cores) if args.hogs else []
    plain_idle = rates(run_plain_loop, n, repeat) if args.hogs else []
    folded_idle = rates(run_ftpipe_folded, n, repeat) if args.hogs else []
    threads_idle = rates(run_ftpipe_threads, n, repeat) if args.hogs else []
    with hogs_running(args.hogs, own_session=args.hog_session == "own"):
        loaded = rates(ours_fn, n, repeat, loaded_cores)
        ours = statistics.median(loaded)
        plain = rates(run_plain_loop, n, repeat)
        folded = rates(run_ftpipe_folded, n, repeat)
        threads = rates(run_ftpipe_threads, n, repeat)
        rows = [
            ("ftpipe, inline=False", statistics.median(threads)),
            ("ftpipe, 1 folded stage", statistics.median(folded)),
            ("plain loop, one thread", statistics.median(plain)),
            ("queue.Queue chain", measure(run_queue_chain, n, repeat)),
            ("ThreadPoolExecutor.map", measure(run_thread_pool, n, repeat)),
        ]
        if spdl_available():
            spdl_n = min(n, 5_000)
            rows.append(("SPDL", measure(run_spdl, spdl_n, max(1, repeat // 2))))
        else:
            print("  (SPDL not installed: pip install spdl-core)")
    if idle:
        slower = statistics.median(idle) / ours
        used = statistics.median
        print(
            f"  {'ftpipe idle, same run':<24} {spread(idle)} items/s, "
            f"{used(idle_cores):.2f} cores used"
        )
        print(
            f"  {f'ftpipe with {args.hogs} hogs':<24} {spread(loaded)} items/s, "
            f"{used(loaded_cores):.2f} cores used"
        )
        print(f"  idle / with hogs (medians) = {slower:.2f}x slower")
        print(idle_against_hogs("plain loop idle", plain_idle, plain, args.hogs))
        print(idle_against_hogs("1 folded stage idle", folded_idle, folded, args.hogs))
        print(idle_against_hogs("inline=False idle", threads_idle, threads, args.hogs))
    print(f"  {'ftpipe':<24} {ours:>12,.0f} items/s")
    for name, rate in rows:
        print(f"  {name:<24} {rate:>12,.0f} items/s   ftpipe / {name} = {ours / rate:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
