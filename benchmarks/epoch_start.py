"""Time to the first batch of epoch 2: ``PipelineLoader`` with persistent workers against without.

Every epoch of a ``PipelineLoader(persistent_workers=False)`` starts its own
worker processes (and, with ``in_subprocess=True``, its own pipeline child),
and each of them imports the stage function's module before its first call;
with ``persistent_workers=True`` (the default) epoch 2 finds them running.
Rows (a process stage with 2 workers, batches of 32 numpy samples):

- in process: the stage's pool per epoch, against kept;
- ``in_subprocess=True``: the child and its pool per epoch, against kept.

Each repeat makes a new loader, runs epoch 1 to the end, then times
``next(iter(loader))`` of epoch 2.  Medians over repeats; the ratio divides the
per-epoch median by the persistent one measured in the same run.  A script
that imports torch (as training scripts do) makes every new worker import it
too: ``--import-torch`` measures that case.

    python benchmarks/epoch_start.py [--repeats 7] [--samples 256] [--import-torch]
    python benchmarks/epoch_start.py --quick      # a check that it runs, not a measurement

Needs torch (``ftpipe.torch``); numbers from a busy machine are noise: compare
ratios from one run on a quiet one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

if "--import-torch" in sys.argv:  # before the workers start: they import this module
    import torch  # noqa: F401

import ftpipe  # noqa: E402

BATCH = 32
SIDE = 64


def load_sample(i: int) -> np.ndarray:
    """A sample's worth of numpy work (about a millisecond)."""
    rng = np.random.default_rng(i)
    x = rng.standard_normal((3, SIDE, SIDE)).astype(np.float32)
    return np.sqrt(np.abs(x)) * np.float32(0.5)


def stack(samples: list[np.ndarray]) -> np.ndarray:
    return np.stack(samples)


def make_builder(samples: int) -> Any:
    def factory(epoch: int) -> ftpipe.PipelineBuilder:
        order = np.random.default_rng(epoch).permutation(samples).tolist()
        return (
            ftpipe.PipelineBuilder()
            .add_source(order)
            .pipe(load_sample, concurrency=2, executor="process", name="load")
            .aggregate(BATCH)
            .pipe(stack)
            .add_sink(buffer_size=4)
        )

    return factory


def epoch2_first_batch(samples: int, persistent: bool, in_subprocess: bool) -> tuple[float, float]:
    """Seconds to the first batch of epoch 1 and of epoch 2, with a fresh loader."""
    import ftpipe.torch as ft

    loader = ft.PipelineLoader(
        make_builder(samples), persistent_workers=persistent, in_subprocess=in_subprocess
    )
    try:
        times = []
        for epoch in range(2):
            loader.set_epoch(epoch)
            start = time.perf_counter()
            batches = iter(loader)
            first = next(batches)
            times.append(time.perf_counter() - start)
            assert first.shape == (BATCH, 3, SIDE, SIDE)
            for _ in batches:
                pass
        return times[0], times[1]
    finally:
        loader.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--import-torch", action="store_true", help="the script imports torch")
    parser.add_argument("--quick", action="store_true", help="2 repeats of 64 samples")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.samples = 2, 64
    rows = [
        ("in process, a pool per epoch", False, False),
        ("in process, persistent_workers", True, False),
        ("in_subprocess, a child per epoch", False, True),
        ("in_subprocess, persistent_workers", True, True),
    ]
    epoch2_first_batch(args.samples, False, False)  # warm-up: the fork server, page cache
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in rows}
    for _ in range(args.repeats):  # rows interleaved, so drift hits them alike
        for name, persistent, in_subprocess in rows:
            results[name].append(epoch2_first_batch(args.samples, persistent, in_subprocess))
    torch_note = ", the script imports torch" if args.import_torch else ""
    print(
        f"time to the first batch, {args.samples} samples, batch {BATCH}, process stage with "
        f"2 workers{torch_note}; medians of {args.repeats} loaders ({sys.version.split()[0]})"
    )
    print(f"{'loader':<36} {'epoch 1 ms':>10} {'epoch 2 ms':>10} {'epoch 2 vs persistent':>22}")
    for i, (name, _, _) in enumerate(rows):
        first = statistics.median(t for t, _ in results[name])
        second = statistics.median(t for _, t in results[name])
        pair = rows[i | 1][0]  # the persistent row of the same pair (rows 1 and 3)
        kept = statistics.median(t for _, t in results[pair])
        print(f"{name:<36} {first * 1e3:>10.1f} {second * 1e3:>10.1f} {second / kept:>21.1f}x")


if __name__ == "__main__":
    main()
