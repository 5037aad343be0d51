"""Stage functions for the tuner tests, importable by name (by processes and subinterpreters).

No tests live here.
"""

from __future__ import annotations

import time
from typing import Any


def compute(x: Any) -> Any:
    """About a millisecond of pure-Python work (holds the GIL on a GIL build)."""
    total = 0
    for i in range(40_000):
        total += i
    return x


def sleep_3ms(x: Any) -> Any:
    """Waits (releases the GIL): more threads than cores help."""
    time.sleep(0.003)
    return x
