"""Transport benchmark: 8 MiB float32 arrays through 2 worker processes and back.

Compares, in one run:
  ftpipe      ProcessExecutor(2).map(identity, arrays)  (shared memory, protocol 5)
  Pool        multiprocessing Pool(2).imap(identity, arrays)  (pickles through pipes)
  copy        arr.copy() in this process: the physical limit of moving the bytes once

Each repeat times all three back to back (the copy as the best of 3 passes: it
is the limit, and a 15 ms pass is easily disturbed); prints the median time per array
and the median of the per-repeat ratios ftpipe / Pool (target >= 5x) and
ftpipe / copy (target >= 0.3).  ftpipe copies every array twice (into the
worker's segment and back out), so the ratio is bounded by cores / 2.

    python benchmarks/transport.py [--quick] [--arrays N] [--repeats R]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from typing import Any

import numpy as np

import ftpipe

MIB = 1 << 20


def identity(x: Any) -> Any:
    return x


def _per_array(run: Any, arrays: list[Any]) -> float:
    """Seconds per array for one pass of ``run`` over ``arrays``."""
    start = time.perf_counter()
    for out in run(arrays):
        assert out.nbytes == arrays[0].nbytes
    return (time.perf_counter() - start) / len(arrays)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer arrays and repeats")
    parser.add_argument("--arrays", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    n = args.arrays or (8 if args.quick else 32)
    repeats = args.repeats or (3 if args.quick else 5)
    arrays = [np.random.default_rng(i).random(2 * MIB, dtype=np.float32) for i in range(n)]
    size = arrays[0].nbytes

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with (
        ftpipe.ProcessExecutor(2, name="transport") as ex,
        multiprocessing.get_context(method).Pool(2) as pool,
    ):
        # Warm up with one full pass: workers started, segments created and paged in
        # (the steady state of a long run, which is what the figure is about).
        list(ex.map(identity, arrays))
        list(pool.imap(identity, arrays))
        # Each repeat measures all three back to back, so a neighbour's burst of
        # load hits one repeat's figures together; the ratios are per-repeat medians.
        samples = []
        for _ in range(repeats):
            samples.append(
                (
                    _per_array(lambda a: ex.map(identity, a), arrays),
                    _per_array(lambda a: pool.imap(identity, a), arrays),
                    # The limit is what the machine can do at best: best of 3 passes
                    # (one pass is only ~15 ms, and a hiccup would flatter ftpipe).
                    min(_per_array(lambda a: (x.copy() for x in a), arrays) for _ in range(3)),
                )
            )
    ours, theirs, copy = (statistics.median(column) for column in zip(*samples, strict=True))
    vs_pool = statistics.median(t / o for o, t, _ in samples)
    vs_copy = statistics.median(c / o for o, _, c in samples)

    def row(label: str, seconds: float) -> str:
        return f"{label:<28} {seconds * 1e3:9.2f} ms/array {size / seconds / 1e9:8.2f} GB/s"

    print(
        f"transport: {n} arrays of {size // MIB} MiB float32, 2 workers, median of {repeats}, "
        f"Python {sys.version.split()[0]} ({ftpipe.runtime_info(find_others=False).gil_summary})"
    )
    print(row("ftpipe ProcessExecutor", ours))
    print(row("multiprocessing Pool.imap", theirs))
    print(row("in-process copy (limit)", copy))
    print(f"ftpipe vs Pool: {vs_pool:.1f}x faster (target >= 5x)")
    print(f"ftpipe vs in-process copy: {vs_copy:.2f} of the limit (target >= 0.3)")
    print("per repeat, vs copy: " + " ".join(f"{c / o:.2f}" for o, _, c in samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
