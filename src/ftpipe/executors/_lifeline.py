"""Children of ftpipe die with their parent, whatever they are doing.

A worker process (or the pipeline subprocess) calls ``die_with_parent()`` first
thing; from then on the parent's death, even by SIGKILL, ends it::

    ftpipe process ──start()──► [forkserver ──fork──►] child
      holds the write end of                             thread "ftpipe-lifeline" blocks on
      multiprocessing's parent-sentinel pipe             parent_process().join()
      │                                                  + while busy, under spawn on Linux:
      ✝ (any death closes it) ───── EOF ───────────────►   PR_SET_PDEATHSIG = SIGKILL
                                                         → cleanup(), os._exit(1)

1. The lifeline thread covers every start method and platform: it waits on
   ``multiprocessing.parent_process().sentinel``, a pipe whose write end only
   the real parent holds (the ftpipe process, not the fork server), so its death
   reads as EOF at once, whatever the child's main thread is doing.  The thread
   then removes the child's shared memory (``cleanup``) and exits.  On a GIL
   build it needs the GIL to act: a child inside a C call that holds the GIL
   would live until the call returns, which is what 2. is for.
2. ``PR_SET_PDEATHSIG`` makes the kernel SIGKILL the child when its parent
   *thread* ends: immune to a child stuck in C code, but no cleanup.  It is
   armed only while the child runs a call (``Lifeline.arm`` / ``disarm``), so an
   idle child still removes its shared memory first (a SIGTERM to the whole
   process group must leave no segments), and only when the direct parent is the
   ftpipe thread that started the child (``spawn``): under ``forkserver``, the
   default, the direct parent is the fork server, which outlives the ftpipe
   process while any of its children run -- and dies at once on a group SIGTERM,
   which would kill the workers before they could clean up.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Lifeline", "die_with_parent"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Lifeline:
    """What ``die_with_parent`` set up; ``arm`` / ``disarm`` bracket each call."""

    def __init__(self, parent_pid: int | None, cleanup: Callable[[], object] | None) -> None:
        self._cleanup = cleanup
        self._parent_pid = parent_pid  # None: no PR_SET_PDEATHSIG here
        self._prctl: Any = None
        if parent_pid is not None:
            try:
                self._prctl = ctypes.CDLL(None, use_errno=True).prctl
            except (OSError, AttributeError):
                self._parent_pid = None

    def arm(self) -> None:
        """Until ``disarm``: SIGKILL the moment the parent dies (spawn children on Linux)."""
        if self._parent_pid is None:
            return
        if self._prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            self._parent_pid = None  # refused (a sandbox): the lifeline thread still watches
            return
        # A parent that died before prctl() took effect sends no signal: we were
        # reparented already, so the expected pid is gone.
        if os.getppid() != self._parent_pid:
            _die(self._cleanup)

    def disarm(self) -> None:
        """Back to exiting through the lifeline thread, which cleans up first."""
        if self._parent_pid is not None:
            self._prctl(_PR_SET_PDEATHSIG, 0, 0, 0, 0)


def die_with_parent(cleanup: Callable[[], object] | None = None) -> Lifeline:
    """Make this child process end when its parent process ends.

    Args:
        cleanup: Called just before exiting because the parent died (e.g. to
            unlink shared memory nobody else will); exceptions are ignored.

    Returns:
        The ``Lifeline``, whose ``arm`` / ``disarm`` a worker calls around each
        call.  A child whose starting thread may end before it (the pipeline
        subprocess, started by a consumer's thread) must never arm it.
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing: nothing to watch
        return Lifeline(None, cleanup)
    threading.Thread(
        target=_watch, args=(parent, cleanup), name="ftpipe-lifeline", daemon=True
    ).start()
    direct = sys.platform.startswith("linux") and os.getppid() == parent.pid
    return Lifeline(parent.pid if direct else None, cleanup)


def _watch(parent: Any, cleanup: Callable[[], object] | None) -> None:
    parent.join()  # returns only once the parent is gone
    _die(cleanup)


def _die(cleanup: Callable[[], object] | None) -> None:
    if cleanup is not None:
        try:
            cleanup()
        except BaseException:  # noqa: BLE001 - nothing can report it: the parent is gone
            pass
    os._exit(1)
