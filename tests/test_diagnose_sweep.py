"""The measuring harness (diagnose/_sweep.py): warm-up, levels, failures."""

from __future__ import annotations

import threading
import time

from ftpipe.diagnose._sweep import SweepSettings, sweep


def test_slow_calls_warm_up_with_one_call_not_three() -> None:
    """The warm-up ran three calls serially whatever they cost (three 5 s calls: 15 s)."""
    warm_up = []
    main = threading.current_thread()

    def slow(x: int) -> int:
        if threading.current_thread() is main:
            warm_up.append(x)
        time.sleep(0.06)
        return x

    settings = SweepSettings((1,), window_s=0.05, min_rounds=1, max_rounds=1, budget_s=0.1)
    points = sweep(slow, list(range(10)), settings)
    assert warm_up == [0]
    assert [p["concurrency"] for p in points] == [1] and points[0]["items"] >= 1
