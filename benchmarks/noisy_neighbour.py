"""Noisy neighbour: a training loop's step time beside a CPU-heavy pipeline, by priority and place.

The training loop stands in for a real one: each step does ``--compute-ms`` of
pure-Python work, then waits ``--device-ms`` (a sleep, as for a device kernel),
then takes the next batch.  The pipeline is a pure-Python stage on as many threads
as there are cores (``aggregate(cores)`` batches), slower than the loop, so it
never idles: it is always there to compete for the cores.

  alone                  the loop over batches prepared beforehand (the baseline)
  in-process             the pipeline's threads in this process, priority="normal"
  in-process background  ... PipelineBuilder(priority="background") (niceness 19 per thread)
  in-process idle        ... priority="idle" (SCHED_IDLE per thread)
  subprocess             ftpipe.run_in_subprocess(builder): the pipeline in one child
  subprocess background  ... run_in_subprocess(builder, priority="background") (SCHED_IDLE:
                         a process of the pipeline's own goes as low as "idle")
  subprocess idle        ... priority="idle"

A step is timed from the start of its compute to the end of its device wait; the
wait for the next batch is not part of it (the pipeline is slower than the loop by
design), and is printed apart as "data wait".  Every figure is the median over
``--repeats`` rounds (modes interleaved per round), with its ratio to the baseline
measured in the same round.  Last, the pipeline's own throughput with the loop idle
(nothing but the consumer draining it), in-process and in a subprocess, each priority
against "normal" in the same place: what a lower priority costs when nobody else
wants the cores.

    python benchmarks/noisy_neighbour.py [--quick] [--steps N] [--repeats R]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

PLACES = ("in-process", "subprocess")
PRIORITIES = ("normal", "background", "idle")


def spin(n: int) -> int:
    """Pure-Python work: ``n`` iterations of integer arithmetic (never releases the GIL)."""
    total = 0
    for k in range(n):
        total += (k * 7) % 13
    return total


def make_item(n: int, i: int) -> list[int]:
    """The pipeline's stage: ``n`` iterations of pure Python, then a small item."""
    return [spin(n) + i] * 16


def calibrate(ms: float) -> int:
    """Iterations of ``spin`` that take about ``ms`` milliseconds on this machine, now."""
    n = 20_000
    while True:
        took = []
        for _ in range(3):  # the fastest of three: a busy moment only makes one slower
            t0 = time.perf_counter()
            spin(n)
            took.append(time.perf_counter() - t0)
        if min(took) > 0.02:
            return max(1, int(n * ms / 1e3 / min(took)))
        n *= 2


def run_steps(
    batches: Iterable[Any], steps: int, compute: int, device_s: float
) -> tuple[list[float], list[float]]:
    """The training loop: per step, the step time and the wait for its batch."""
    times, waits = [], []
    it = iter(batches)
    for _ in range(steps):
        t0 = time.perf_counter()
        next(it)
        t1 = time.perf_counter()
        spin(compute)
        time.sleep(device_s)
        times.append(time.perf_counter() - t1)
        waits.append(t1 - t0)
    return times, waits


def _p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer steps, one round")
    parser.add_argument("--steps", type=int, default=None, help="steps per mode and round")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 3; 1 quick)")
    parser.add_argument("--compute-ms", type=float, default=2.0)
    parser.add_argument("--device-ms", type=float, default=3.0)
    parser.add_argument("--item-ms", type=float, default=10.0, help="pipeline stage per item")
    parser.add_argument(
        "--items", type=int, default=None, help="items for the throughput test (0: skip it)"
    )
    parser.add_argument(
        "--modes",
        default=None,
        help="comma-separated modes to time beside 'alone' (default: all), "
        "e.g. 'subprocess background,subprocess idle'",
    )
    args = parser.parse_args(argv)
    steps = args.steps or (40 if args.quick else 400)
    repeats = args.repeats or (1 if args.quick else 3)
    items = (64 if args.quick else 1_000) if args.items is None else args.items

    import ftpipe

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import noisy_neighbour as here  # importable by name in the pipeline's child

    cores = ftpipe.runtime_info(find_others=False).usable_cores
    compute = calibrate(args.compute_ms)
    item_n = calibrate(args.item_ms)
    device_s = args.device_ms / 1e3
    stage = functools.partial(here.make_item, item_n)

    def builder(priority: str, n: int) -> ftpipe.PipelineBuilder:
        return (
            ftpipe.PipelineBuilder(priority=priority)
            .add_source(range(n))
            .pipe(stage, concurrency=cores, name="make_item")
            .aggregate(cores)
            .add_sink(buffer_size=4)
        )

    def opened(place: str, priority: str, n: int) -> Any:
        """The pipeline of ``n`` items, as a user opens it: here, or in a child process."""
        if place == "in-process":
            return builder(priority, n).build()
        return ftpipe.run_in_subprocess(builder("normal", n), buffer_size=4, priority=priority)

    def steps_beside(place: str, priority: str) -> Callable[[], tuple[list[float], list[float]]]:
        def run() -> tuple[list[float], list[float]]:
            with opened(place, priority, (steps + 8) * cores) as batches:
                return run_steps(batches, steps, compute, device_s)

        return run

    ready = [[0] * 16 for _ in range(steps)]
    modes: dict[str, Callable[[], tuple[list[float], list[float]]]] = {
        "alone": lambda: run_steps(ready, steps, compute, device_s)
    }
    for place in PLACES:
        for priority in PRIORITIES:
            mode = place if priority == "normal" else f"{place} {priority}"
            modes[mode] = steps_beside(place, priority)
    if args.modes:
        chosen = [m.strip() for m in args.modes.split(",")]
        unknown = [m for m in chosen if m not in modes]
        if unknown:
            parser.error(f"unknown --modes {unknown}; choose among {list(modes)}")
        modes = {m: run for m, run in modes.items() if m == "alone" or m in chosen}

    # Per mode and round: p50, p99 (ms), their ratios to this round's baseline, data wait.
    rows: dict[str, list[tuple[float, float, float, float, float]]] = {m: [] for m in modes}
    for _ in range(repeats):
        base50 = base99 = 0.0
        for mode, run in modes.items():
            times, waits = run()
            p50, p99 = _p(times, 0.5) * 1e3, _p(times, 0.99) * 1e3
            if mode == "alone":
                base50, base99 = p50, p99
            rows[mode].append(
                (p50, p99, p50 / base50, p99 / base99, statistics.median(waits) * 1e3)
            )

    def throughput(place: str, priority: str) -> float:
        t0 = time.perf_counter()
        with opened(place, priority, items) as batches:
            for _ in batches:
                pass
        return items / (time.perf_counter() - t0)

    rates: dict[tuple[str, str], list[float]] = {
        (place, priority): [] for place in PLACES for priority in PRIORITIES
    }
    for _ in range(repeats if items > 0 else 0):
        for place, priority in rates:
            rates[place, priority].append(throughput(place, priority))

    info = ftpipe.runtime_info(find_others=False)
    print(
        f"noisy neighbour: Python {sys.version.split()[0]} ({info.gil_summary}), {cores} cores; "
        f"loop step {args.compute_ms:g} ms compute + {args.device_ms:g} ms device wait, "
        f"{steps} steps; pipeline stage {args.item_ms:g} ms/item on {cores} threads; "
        f"medians of {repeats} round(s)"
    )
    print(
        f"{'mode':<24}{'p50 ms':>9}{'p99 ms':>9}{'p50/alone':>11}{'p99/alone':>11}"
        f"{'data wait ms':>14}"
    )
    for mode, values in rows.items():
        p50, p99, r50, r99, wait = (statistics.median(v) for v in zip(*values, strict=True))
        print(f"{mode:<24}{p50:>9.2f}{p99:>9.2f}{r50:>10.2f}x{r99:>10.2f}x{wait:>14.2f}")
    print("(ratios: 1.00x is the loop alone; lower is better)")
    if items <= 0:
        return 0
    print(f"pipeline throughput, loop idle ({items} items):")
    for (place, priority), values in rates.items():
        rate = statistics.median(values)
        normal = statistics.median(rates[place, "normal"])
        print(
            f"  {place:<11} priority={priority!r:<13}{rate:>8.1f} items/s  "
            f"{rate / normal:.2f}x of 'normal'"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
