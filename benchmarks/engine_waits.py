"""Where the engine's time goes on a busy machine: hand-offs, batch sizes, wake-up waits.

Runs ``engine_overhead.py``'s 3-stage no-op pipeline with the channel instrumented
(items per ``get``, sleeps per item, the mean time a sleeping thread takes to run
again once woken) idle, then with ``--hogs`` busy-looping processes beside it, in
the same run.  A diagnostic, not a claim: it shows *why* throughput drops.

    python benchmarks/engine_waits.py [--items 20000] [--runs 4] [--hogs 2]
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_overhead import hogs_running, run_ftpipe  # noqa: E402

from ftpipe._engine import _channel  # noqa: E402

_counts: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()
_get, _sleep = _channel.Channel.get, _channel.Channel._sleep


def _counted_get(self: Any, max_n: int) -> Any:
    out = _get(self, max_n)
    with _lock:
        _counts["gets"] += 1
        _counts["items"] += len(out[1])
    return out


def _timed_sleep(self: Any, waker: Any, waiters: Any) -> None:
    t = time.perf_counter()
    _sleep(self, waker, waiters)
    with _lock:
        _counts["sleeps"] += 1
        _counts["sleep_ns"] += int((time.perf_counter() - t) * 1e9)


def _runs(n: int, runs: int) -> list[str]:
    lines = []
    for _ in range(runs):
        _counts.clear()
        t = time.perf_counter()
        run_ftpipe(n)
        rate = n / (time.perf_counter() - t)
        sleeps = max(1, _counts["sleeps"])
        lines.append(
            f"{rate:>10,.0f} items/s  {_counts['items'] / max(1, _counts['gets']):5.1f} items/get"
            f"  {_counts['sleeps'] / n:5.2f} sleeps/item  {_counts['sleep_ns'] / sleeps / 1e3:7.0f} µs/sleep"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=20000)
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--hogs", type=int, default=2)
    args = p.parse_args(argv)
    _channel.Channel.get = _counted_get  # type: ignore[method-assign]
    _channel.Channel._sleep = _timed_sleep  # type: ignore[method-assign]
    print(
        f"# {sys.version.split()[0]} {getattr(sys, '_is_gil_enabled', lambda: True)() and 'GIL' or 'no GIL'}"
    )
    print("idle:")
    for line in _runs(args.items, args.runs):
        print("  " + line)
    with hogs_running(args.hogs):
        time.sleep(0.5)
        print(f"{args.hogs} hogs:")
        for line in _runs(args.items, args.runs):
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
