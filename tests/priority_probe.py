"""Stage functions that report how the thread running them is scheduled (stdlib only:
they also run in subinterpreters)."""

from __future__ import annotations

import os
import threading


def sched_of(tid: int, pid: int | None = None) -> tuple[int, int]:
    """(niceness, policy) of thread ``tid``; of another process's thread when ``pid`` is given."""
    if pid is None or pid == os.getpid():
        return os.getpriority(os.PRIO_PROCESS, tid), os.sched_getscheduler(tid)
    # Another process's thread: niceness from /proc (field 19), policy via the tid.
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[16]), os.sched_getscheduler(tid)


def here(_: object = None) -> tuple[int, int, int]:
    """(niceness, policy, pid) of the calling thread."""
    tid = threading.get_native_id()
    return (*sched_of(tid), os.getpid())


def every_thread(_: object = None) -> list[tuple[int, int]]:
    """(niceness, policy) of every thread of the calling process.

    A thread that ends between the listing and the reading is skipped (the
    pipeline's own threads come and go: a finished epoch's, a retired worker).
    """
    out = []
    for tid in os.listdir("/proc/self/task"):
        try:
            out.append(sched_of(int(tid)))
        except ProcessLookupError:
            continue
    return out


def started_thread(_: object = None) -> tuple[int, int]:
    """(niceness, policy) of a thread the calling thread starts: what it inherits."""
    out: list[tuple[int, int]] = []
    t = threading.Thread(target=lambda: out.append(sched_of(threading.get_native_id())))
    t.start()
    t.join(10)
    return out[0]


def affinity(_: object = None) -> frozenset[int]:
    """The CPUs the calling thread may run on."""
    return frozenset(os.sched_getaffinity(0))


async def here_async(_: object = None) -> tuple[int, int, int]:
    return here()


class RecordingSource:
    """An iterable that records the scheduling of the thread that iterates it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen: list[tuple[int, int, int]] = []

    def __iter__(self):  # type: ignore[no-untyped-def]
        for i in range(self.n):
            self.seen.append(here())
            yield i
