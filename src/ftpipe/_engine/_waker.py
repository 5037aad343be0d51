"""One thread's wake-up, and the lists of waiters a channel keeps (``_channel``)."""

from __future__ import annotations

import os
import threading

__all__ = ["Waker", "discard", "my_waker", "wake_all"]


class Waker:
    """One thread's wake-up: its waits sleep in the kernel (an eventfd, or a pipe).

    Why not ``threading.Condition``: on the free-threaded build a thread that
    blocks on a ``threading.Lock`` first calls ``sched_yield`` up to 40 times,
    and on a busy machine every yield hands the core to another process for a
    whole time slice; a hand-off then costs milliseconds.  A blocking ``read``
    sleeps at once, and the kernel wakes the reader as soon as it is written to.
    Each thread has its own, so a wake-up always reaches the thread it was for.
    """

    __slots__ = ("_r", "_w")

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):
            self._r = self._w = os.eventfd(0, os.EFD_CLOEXEC)
        else:  # pragma: no cover - non-Linux
            self._r, self._w = os.pipe()

    def wait(self) -> None:
        """Sleep until woken (returns at once if a wake-up is already pending)."""
        if self._r == self._w:
            os.eventfd_read(self._r)  # reads and resets the counter
        else:  # pragma: no cover - non-Linux
            os.read(self._r, 1)

    def wake(self) -> None:
        if self._r == self._w:
            os.eventfd_write(self._w, 1)
        else:  # pragma: no cover - non-Linux
            os.write(self._w, b"x")

    def __del__(self) -> None:  # runs when the owning thread's locals are cleared
        os.close(self._r)
        if self._w != self._r:  # pragma: no cover - non-Linux
            os.close(self._w)


_thread_wakers = threading.local()


def my_waker() -> Waker:
    waker: Waker | None = getattr(_thread_wakers, "waker", None)
    if waker is None:
        waker = _thread_wakers.waker = Waker()
    return waker


def discard(waiters: list[Waker], waker: Waker) -> None:
    try:
        waiters.remove(waker)
    except ValueError:
        pass


def wake_all(wakers: list[Waker]) -> None:
    for waker in wakers:
        waker.wake()
