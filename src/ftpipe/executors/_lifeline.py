"""Children of ftpipe die with their parent, whatever they are doing.

A worker process (or the pipeline subprocess) calls ``die_with_parent()`` first
thing; from then on the parent's death, even by SIGKILL, ends it::

    ftpipe process ──start()──► [forkserver ──fork──►] child
      holds the write end of                             1. Linux, spawn: PR_SET_PDEATHSIG = SIGTERM
      multiprocessing's parent-sentinel pipe             2. thread "ftpipe-lifeline" blocks on
      │                                                     parent_process().join()
      ✝ (any death closes it) ───── EOF ───────────────►    → cleanup(), os._exit(1)

1. ``PR_SET_PDEATHSIG`` makes the kernel send SIGTERM to the child when its parent
   *thread* ends (SIGTERM, whose handler unlinks the worker's shared memory before
   it dies; it runs between bytecodes).  It is tied to the direct parent, which
   under ``forkserver`` (the default) is the fork server, so it is set only for
   ``spawn`` children, whose direct parent is the ftpipe thread that started them.
2. The lifeline thread covers every start method and platform: it waits on
   ``multiprocessing.parent_process().sentinel``, a pipe whose write end only the
   real parent holds (the ftpipe process, not the fork server), so its death
   reads as EOF at once.  On a GIL build the thread needs the GIL to act: a child
   inside a C call that holds the GIL for minutes dies when that call returns.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(cleanup: Callable[[], object] | None = None, *, pdeathsig: bool = True) -> None:
    """Make this child process end when its parent process ends.

    Args:
        cleanup: Called (by the lifeline thread) just before exiting, e.g. to
            unlink shared memory nobody else will; exceptions are ignored.
        pdeathsig: Also ask Linux for SIGKILL when the parent *thread* that
            started this process ends.  Only for children whose starting thread
            outlives them (a pool's worker thread does; a user's thread may not).
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing: nothing to watch
        return
    # Only where the kernel's notion of the parent is the real one (spawn): under
    # forkserver it is the fork server, whose death (a SIGTERM to the whole process
    # group) must not cut short this worker's own clean-up.
    if pdeathsig and sys.platform.startswith("linux") and os.getppid() == parent.pid:
        _set_pdeathsig()
    threading.Thread(
        target=_watch, args=(parent, cleanup), name="ftpipe-lifeline", daemon=True
    ).start()


def _set_pdeathsig() -> None:
    before = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        # SIGTERM, not SIGKILL: the worker's SIGTERM handler unlinks its shared
        # memory first (a parent killed by a group-wide SIGTERM cleans up nothing).
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return  # refused (a sandbox): the lifeline thread still watches
    except (OSError, AttributeError):
        return
    # A parent that died before prctl() took effect sends no signal: we were
    # reparented already.  (One that died even before `before` was read is
    # caught by the lifeline thread, whose pipe is at EOF from the start.)
    if os.getppid() != before:
        os._exit(1)


def _watch(
    parent: multiprocessing.process.BaseProcess, cleanup: Callable[[], object] | None
) -> None:
    parent.join()  # returns only once the parent is gone
    if cleanup is not None:
        try:
            cleanup()
        except BaseException:  # noqa: BLE001 - nothing can report it: the parent is gone
            pass
    os._exit(1)
