"""CPU scaling: one pure-Python stage at concurrency 1, 2, 4, with and without the GIL.

For each interpreter configuration (this free-threaded interpreter with
``-X gil=0`` and ``-X gil=1``, and a stock GIL build when found) a child process
measures, in one run:

  * the baseline: a plain ``for`` loop calling the function (serial),
  * ftpipe: ``pipe(fn, concurrency=c)`` for c in 1, 2, 4,
  * SPDL (``spdl-core``) with the same concurrency, where installed,

and prints items/s (median of ``--repeat`` runs) and the speedup over the serial loop.

    python benchmarks/cpu_scaling.py [--items 200] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
CONCURRENCY = (1, 2, 4)


def work(n: int) -> int:
    """About a millisecond of pure-Python arithmetic: holds the GIL throughout."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def _rate(fn, items: int, repeat: int) -> float:  # type: ignore[no-untyped-def]
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        got = fn()
        elapsed = time.perf_counter() - t0
        assert got == items, (got, items)
        rates.append(items / elapsed)
    return statistics.median(rates)


def child(items: int, repeat: int, size: int) -> dict[str, object]:
    import ftpipe

    inputs = [size] * items

    def serial() -> int:
        return sum(1 for x in inputs if work(x) >= 0)

    def with_ftpipe(c: int) -> int:
        with ftpipe.PipelineBuilder().add_source(inputs).pipe(work, concurrency=c).build() as p:
            return sum(1 for _ in p)

    result: dict[str, object] = {
        "label": ftpipe.runtime_info(find_others=False).gil_summary,
        "version": ".".join(map(str, sys.version_info[:3])),
        "serial": _rate(serial, items, repeat),
        "ftpipe": {c: _rate(lambda c=c: with_ftpipe(c), items, repeat) for c in CONCURRENCY},
    }
    try:
        from spdl.pipeline import PipelineBuilder
    except ImportError:
        return result

    def with_spdl(c: int) -> int:
        pipeline = (
            PipelineBuilder()
            .add_source(inputs)
            .pipe(work, concurrency=c)
            .add_sink(4)
            .build(num_threads=c)
        )
        with pipeline.auto_stop():
            return sum(1 for _ in pipeline.get_iterator(timeout=120))

    result["spdl"] = {c: _rate(lambda c=c: with_spdl(c), items, repeat) for c in CONCURRENCY}
    return result


def configurations() -> list[tuple[str, list[str]]]:
    import sysconfig

    configs: list[tuple[str, list[str]]] = []
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        configs += [
            ("3.13t GIL off", [sys.executable, "-X", "gil=0"]),
            ("3.13t GIL on", [sys.executable, "-X", "gil=1"]),
        ]
    else:
        configs.append((f"{sys.version_info[0]}.{sys.version_info[1]}", [sys.executable]))
    stock = (
        Path(os.environ.get("FTPIPE_CACHE", Path.home() / ".cache" / "ftpipe"))
        / "bin"
        / "python3.13"
    )
    if stock.exists() and sysconfig.get_config_var("Py_GIL_DISABLED"):
        configs.append(("3.13 (stock)", [str(stock)]))
    return configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=20_000, help="loop length per item")
    parser.add_argument("--quick", action="store_true", help="100 items, 2 repeats")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    items, repeat = (100, 2) if args.quick else (args.items, args.repeat)
    if args.child:
        print(json.dumps(child(items, repeat, args.size)))
        return 0
    print(
        f"cpu_scaling: pure-Python stage, {items} items of ~{args.size} loop steps, median of {repeat}"
    )
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    header = f"  {'configuration':<16} {'runner':<8} {'serial/s':>9}" + "".join(
        f" {'c=' + str(c):>14}" for c in CONCURRENCY
    )
    print(header)
    for name, command in configurations():
        script = [
            *command,
            __file__,
            "--child",
            "--items",
            str(items),
            "--repeat",
            str(repeat),
            "--size",
            str(args.size),
        ]
        proc = subprocess.run(
            script, capture_output=True, text=True, env=env, timeout=1200, check=False
        )
        if proc.returncode != 0:
            print(f"  {name:<16} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        serial = data["serial"]
        for runner in ("ftpipe", "spdl"):
            if runner not in data:
                continue
            cells = "".join(
                f" {rate:>7.0f} ({rate / serial:4.2f}x)"
                for rate in (data[runner][str(c)] for c in CONCURRENCY)
            )
            print(f"  {name:<16} {runner:<8} {serial:>9.0f}{cells}")
    print("  (cells: items/s, and the speedup over the serial for-loop measured in the same child)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
