"""Arrays through the process executor's shared memory, their views dropped by any thread.

A result array is a view of a segment the worker process owns; the worker may reuse
the segment once every view of it is gone, whichever thread drops the last one.  On
3.13t that last drop can run its bookkeeping inside whatever bytecode the loading
thread happens to execute, so this is where a lock taken in that path deadlocks.

Invariants per example:

- every result is exactly ``-input`` when it arrives and when it is finally dropped
  (a segment reused while a view was alive would show someone else's data);
- the whole exchange finishes within a bound (a hang fails with every thread's stack);
- afterwards: no thread, child process or /dev/shm segment left (the conftest check).
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np
from _stage_fns import negate
from _stress_support import bounded
from hypothesis import given, note
from hypothesis import strategies as st

import ftpipe
from conftest import budget, count_example, soak

# Below, at and above the size from which buffers go through shared memory (64 KiB).
SIZES = st.sampled_from([1 << 10, 1 << 16, 1 << 18, 3 << 19])


def _exchange(sizes: list[int], droppers: int, keep: int, workers: int) -> None:
    handoff: queue.SimpleQueue[Any] = queue.SimpleQueue()
    bad: list[str] = []

    def let_go(x: np.ndarray, y: np.ndarray) -> None:
        if not np.array_equal(y, -x):
            bad.append(f"a result changed before it was dropped ({x.nbytes} bytes)")

    def drop() -> None:
        # Keeps the last `keep` results alive for a while, then lets them go.
        held: list[tuple[np.ndarray, np.ndarray]] = []
        while (item := handoff.get()) is not None:
            held.append(item)
            if len(held) > keep:
                let_go(*held.pop(0))
        for pair in held:
            let_go(*pair)

    threads = [threading.Thread(target=drop, name="stress-dropper") for _ in range(droppers)]
    for t in threads:
        t.start()
    try:
        with ftpipe.ProcessExecutor(workers, name="stress-transport") as ex:
            inputs = [np.full(n // 4, i, dtype=np.float32) for i, n in enumerate(sizes)]
            for x, y in zip(inputs, ex.map(negate, inputs), strict=True):
                assert np.array_equal(y, -x), f"wrong result for a {x.nbytes}-byte array"
                handoff.put((x, y))
                del y
    finally:
        for _ in threads:
            handoff.put(None)
        for t in threads:
            t.join()
    assert not bad, bad[:3]


@given(
    sizes=st.lists(SIZES, min_size=1, max_size=48),
    droppers=st.integers(1, 3),
    keep=st.integers(0, 12),
    workers=st.integers(1, 2),
)
@budget(25)
def _transport(sizes: list[int], droppers: int, keep: int, workers: int) -> None:
    note(f"{len(sizes)} arrays, {droppers} dropping threads keeping {keep}, {workers} workers")
    count_example("transport_views_dropped_anywhere")
    bounded(lambda: _exchange(sizes, droppers, keep, workers), timeout=60)


def test_result_views_dropped_by_other_threads_recycle_safely() -> None:
    soak(_transport)


def test_a_stream_of_small_results_dropped_by_three_threads() -> None:
    # Thousands of views dying on other threads while the loading thread runs
    # Python: with a lock in the release path this deadlocked within a second on 3.13t.
    bounded(lambda: _exchange([1 << 16] * 2000, droppers=3, keep=0, workers=2), timeout=60)
