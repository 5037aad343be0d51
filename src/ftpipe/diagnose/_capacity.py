"""How much parallelism this machine really gives right now: the detector's yardstick.

A speedup is judged against an ideal.  The core count is the wrong one on shared
machines: two vCPUs can be hyperthreads of one core or slices of a busy host, and
then perfectly parallel code gets 1.3x, not 2x, from two workers.  So next to the
curves the detector measures what ``k`` independent processes spinning a pure-Python
loop get together against one alone, and takes that as the ideal speedup at ``k``::

    capacity(k) = work done by k spinning processes / work done by 1, same wall time

Processes share nothing (no GIL, no refcounts, no locks), so whatever keeps them
below ``k`` is the machine itself.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

__all__ = ["MIN_CAPACITY", "Capacity", "measure_capacity"]

# Below this many times one process's work from two, the machine cannot run two
# things at once right now, and no verdict about scaling can be trusted.
MIN_CAPACITY = 1.5


@dataclass(frozen=True)
class Capacity:
    """What ``level`` processes spinning pure Python got together, in units of one alone."""

    level: int
    speedup: float


_SPIN = """
import sys, time
start, seconds = float(sys.argv[1]), float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
end, n = time.perf_counter() + seconds, 0
while time.perf_counter() < end:
    for _ in range(1000):
        pass
    n += 1
print(n)
"""


def _spin(k: int, seconds: float) -> int:
    """Loops done by ``k`` processes spinning together for ``seconds``."""
    start = time.time() + 0.1  # every process starts its loop at the same moment
    procs = [
        subprocess.Popen(
            [sys.executable, "-S", "-c", _SPIN, str(start), str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(k)
    ]
    total = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=30 + seconds)
        total += int(out or 0)
    return total


def measure_capacity(k: int, seconds: float = 0.2, rounds: int = 3) -> float | None:
    """How many times one process's work ``k`` spinning processes do in the same time.

    One process alone and ``k`` together alternate ``rounds`` times; the ratio of the
    medians is robust to one disturbed round on either side.

    Returns:
        The measured capacity (``k`` on an idle machine with ``k`` real cores), or
        None where it could not be measured (processes cannot be started).
    """
    if k < 2:
        return 1.0
    ones: list[int] = []
    manys: list[int] = []
    try:
        for _ in range(rounds):
            ones.append(_spin(1, seconds))
            manys.append(_spin(k, seconds))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    one = statistics.median(ones)
    return min(float(k), statistics.median(manys) / one) if one > 0 else None
