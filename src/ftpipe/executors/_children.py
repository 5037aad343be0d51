"""Child processes whose exit code is right when several threads ask at once.

multiprocessing reads a forkserver child's exit code from a pipe, 4 bytes the
forkserver writes once it has reaped the child, in ``Popen.poll()``, without a
lock.  And every ``Process.start()``, in any thread, polls every live child
(``multiprocessing.process._cleanup``).  So when a child dies while another thread
starts a process (a pool's worker threads start theirs at once; two pipelines
run side by side), two threads can read that pipe together: one gets the code,
the other end-of-file, which ``poll()`` reports as 255, and whichever writes last
wins.  A worker killed by SIGKILL was then reported as "exited with code 255"::

    thread A: os.kill(child, SIGKILL); child.exitcode   thread B: Process(...).start()
              poll(): sentinel readable                           _cleanup(): poll() of A's child
              read 4 bytes -> -9                                   read -> EOF -> 255

``new_process`` makes the processes ftpipe starts with a ``poll()`` that reads
under a lock of its own: the blocking wait for the child's end stays outside it
(a ``join()`` in one thread never holds up a ``start()`` in another).
"""

from __future__ import annotations

import os
import threading
from multiprocessing import context
from multiprocessing.connection import wait
from typing import Any

__all__ = ["new_process"]

try:
    from multiprocessing import popen_forkserver
except ImportError:  # no forkserver on this platform (Windows): nothing to guard
    popen_forkserver = None  # type: ignore[assignment]


if popen_forkserver is not None:

    class _ForkServerPopen(popen_forkserver.Popen):
        """The forkserver's ``Popen``, reading the exit code under a lock."""

        def __init__(self, process_obj: Any) -> None:
            self._reading = threading.Lock()
            super().__init__(process_obj)

        def poll(self, flag: int = os.WNOHANG) -> int | None:
            if self.returncode is None and flag != os.WNOHANG:
                wait([self.sentinel])  # until the child has ended: without the lock
            with self._reading:
                return super().poll(os.WNOHANG)  # type: ignore[no-any-return]

    class _ForkServerProcess(context.ForkServerProcess):
        @staticmethod
        def _Popen(process_obj: Any) -> Any:  # noqa: N802 - multiprocessing's name
            return _ForkServerPopen(process_obj)


def new_process(ctx: Any, **kwargs: Any) -> Any:
    """``ctx.Process(**kwargs)``; for the forkserver, one whose exit code reads safely."""
    if popen_forkserver is not None and ctx.get_start_method() == "forkserver":
        return _ForkServerProcess(**kwargs)
    return ctx.Process(**kwargs)
