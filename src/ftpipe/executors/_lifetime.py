"""How long worker threads live: past a dropped pool, and until every call submitted has run.

Worker threads hold their pool's shared state, never the pool object, so a pool
can be garbage collected while they run; the ``Executor`` contract still holds::

    pool dropped (no shutdown) --weakref.finalize--> stop sentinel on its queue:
                                                     workers finish what is queued, then stop
    first worker of a pool starts -- track(state)   -> _live   (what interpreter exit waits for)
    last worker of a pool exits   -- untrack(state) <-
    interpreter exit (atexit): stop pipelines -> exiting() is True (submit refuses)
                               -> every live state: stop() behind its queued calls, join()

Worker threads are daemons, so that ``threading`` does not join them before the
atexit hooks run (pipelines are stopped there, first); this module's hook then
does what ``ThreadPoolExecutor``'s does.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from queue import SimpleQueue
from typing import Any, Protocol

from .._engine import stop_all_pipelines

__all__ = ["Workers", "exiting", "stop_when_dropped", "track", "untrack"]


class Workers(Protocol):
    """The worker threads of one pool, as interpreter exit sees them."""

    def stop(self) -> None:
        """Refuse new calls; the workers finish the queued ones, then exit."""

    def join(self) -> None:
        """Wait until every worker thread has exited."""


# Pools whose worker threads still run, whatever became of the pool object (shut
# down with wait=False, or dropped).  Lock order: a pool's own lock, then _live_lock.
_live: set[Workers] = set()
_live_lock = threading.Lock()
# Set once by the exit hook, under _live_lock, and never cleared.
_exiting = False

# How long interpreter exit waits for pipelines' own threads (the executors they
# created are stopped either way).
_PIPELINE_EXIT_S = 2.0


def track(workers: Workers) -> None:
    """Make interpreter exit wait for ``workers`` (its first worker is starting)."""
    with _live_lock:
        _live.add(workers)


def untrack(workers: Workers) -> None:
    """Its last worker thread has exited: nothing left to wait for."""
    with _live_lock:
        _live.discard(workers)


def exiting() -> bool:
    """True once interpreter exit began stopping executors: no new calls from then on."""
    # A plain read of a flag set once; the hook then stops each pool under that
    # pool's lock, which a submit() racing it takes too, so no call slips past.
    return _exiting


def stop_when_dropped(pool: object, queue: SimpleQueue[Any]) -> None:
    """When ``pool`` is garbage collected without shutdown, wake its workers to stop.

    They finish the calls already queued (their futures still complete), then
    exit, as ``ThreadPoolExecutor``'s do.  Only a sentinel, no lock:
    ``SimpleQueue.put`` is safe in a callback that may run on any thread, even one
    that holds the pool's lock.
    """
    weakref.finalize(pool, queue.put, None).atexit = False


def _join_at_exit() -> None:
    """Interpreter exit: run every call already submitted to the end, then stop the workers.

    The ``Executor.shutdown`` contract: the program does not exit until all
    pending futures are done.  Each worker then stops its child process or
    destroys its subinterpreter.
    """
    global _exiting
    # Pipelines first: they stop the executors they created without waiting for
    # running calls (a stopping pipeline wants none of their results).
    stop_all_pipelines(timeout=_PIPELINE_EXIT_S)
    with _live_lock:
        _exiting = True
        live = list(_live)
    for workers in live:  # every pool stops at once, then each is waited for
        workers.stop()
    for workers in live:
        workers.join()


# multiprocessing is imported first so this hook runs before its own exit hook
# (atexit is last-in, first-out): our children get a clean stop message first,
# rather than multiprocessing joining children that wait for one.
import multiprocessing.util  # noqa: E402,F401

atexit.register(_join_at_exit)
