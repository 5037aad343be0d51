"""Noisy neighbour: a training loop's step time, fed in-process vs by run_in_subprocess.

The training loop does fixed numpy work per step (30 matmuls, as an eager
framework does: each releases the GIL and must take it back).  A CPU-heavy
pipeline (a pure-Python stage on 2 threads, slower than the loop, so it never
idles) feeds it one batch per step.

  alone         the training loop with batches prepared beforehand (the floor)
  in-process    the pipeline's threads share this process (and, on GIL builds, the GIL)
  subprocess    ftpipe.run_in_subprocess: the pipeline runs in one child process

Only the step's compute is timed (not the wait for the next batch), so the
figures show how much the neighbour slows the training thread itself.  Prints
p50 / p99 step time per mode and the ratios in-process / subprocess.

    python benchmarks/noisy_neighbour.py [--quick] [--steps N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def make_batch(i: int) -> Any:
    """The pipeline's CPU-heavy stage: ~20 ms of pure Python (it never sleeps), then a small array."""
    import numpy as np

    total = 0
    for k in range(250_000):
        total += (k * i) % 7
    return np.full((64, 64), total % 10, dtype=np.float32)


def train_step(batch: Any, weights: Any) -> Any:
    import numpy as np

    x = np.tile(batch, (2, 2))  # 128 x 128
    for _ in range(30):  # each matmul releases the GIL and must take it back
        x = np.tanh(x @ weights)
    return x


def _percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return statistics.median(ordered) * 1e3, p99 * 1e3


def run_steps(batches: Any, steps: int, weights: Any) -> list[float]:
    times = []
    it = iter(batches)
    for _ in range(steps):
        batch = next(it)
        start = time.perf_counter()
        train_step(batch, weights)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args(argv)
    steps = args.steps or (80 if args.quick else 300)

    import numpy as np

    import ftpipe

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import noisy_neighbour as here  # importable by name in the pipeline's child

    weights = np.random.default_rng(0).random((128, 128), dtype=np.float32) / 128

    def builder() -> ftpipe.PipelineBuilder:
        return (
            ftpipe.PipelineBuilder()
            .add_source(range(steps + 64))
            .pipe(here.make_batch, concurrency=2, name="make_batch")
            .add_sink(buffer_size=8)
        )

    ready = [here.make_batch(i) for i in range(steps)]
    results = {"alone": run_steps(ready, steps, weights)}
    with builder().build() as pipeline:
        results["in-process"] = run_steps(pipeline, steps, weights)
    with ftpipe.run_in_subprocess(builder(), buffer_size=8) as remote:
        results["subprocess"] = run_steps(remote, steps, weights)

    info = ftpipe.runtime_info(find_others=False)
    print(
        f"noisy neighbour: {steps} steps, pipeline stage on 2 threads, Python "
        f"{sys.version.split()[0]} ({info.gil_summary}), {info.usable_cores} cores"
    )
    print(f"{'mode':<14}{'p50 ms':>10}{'p99 ms':>10}")
    stats = {mode: _percentiles(times) for mode, times in results.items()}
    for mode, (p50, p99) in stats.items():
        print(f"{mode:<14}{p50:>10.2f}{p99:>10.2f}")
    (a50, a99), (s50, s99) = stats["in-process"], stats["subprocess"]
    print(
        f"in-process / subprocess: p50 {a50 / s50:.2f}x, p99 {a99 / s99:.2f}x "
        f"(>1: run_in_subprocess keeps the training step faster)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
