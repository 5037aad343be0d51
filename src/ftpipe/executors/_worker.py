"""A pool's worker threads: the loop each one runs, and the state they share with the pool.

::

    submit() --WorkItem--> PoolState.queue --> work(): a worker thread, its own context
                           (SimpleQueue)         first item: ctx.initialize()   (fails: pool broken)
                                                 ctx.run(fn, args, kwargs) --> future result / exception
                                                 BrokenWorkerError --> break_with(): queued calls fail,
                                                                       submit() refuses new ones
                           sentinel None ------> pass it on; ctx.finalize(); the thread exits
                           RETIRE (a shrink) --> this worker alone: ctx.finalize(); it exits

Threads hold the ``PoolState``, never the pool, so a dropped pool can be
collected while they finish (see ``_lifetime``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any

from .._priority import NORMAL, Scheduling
from . import _lifetime
from ._context import BrokenWorkerError, WorkerContext

__all__ = ["RETIRE", "PoolState", "WorkItem", "work"]


class _Retire:
    """The queue item that retires the one worker taking it (``WorkerPool.resize``)."""

    def __repr__(self) -> str:
        return "RETIRE"


RETIRE: Any = _Retire()


@dataclass(eq=False)
class WorkItem:
    """One submitted call and the future that reports it."""

    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(eq=False)
class PoolState:
    """What worker threads share with their pool; threads hold this, not the pool."""

    queue: SimpleQueue[WorkItem | _Retire | None] = field(default_factory=SimpleQueue)
    # Guards shutdown/broken flags against submit(), so no item slips in after a
    # drain; also guards threads and live.
    lock: threading.Lock = field(default_factory=threading.Lock)
    # One token per idle worker: submit() starts a new worker only when none is left.
    idle: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    shutdown: bool = False
    broken: BrokenWorkerError | None = None
    threads: list[threading.Thread] = field(default_factory=list)
    live: int = 0  # worker threads not yet finished; tracked by _lifetime while > 0
    workers: int = 0  # started and not retired: what max_workers bounds
    retiring: int = 0  # RETIRE items queued and not yet taken

    def stop(self, cancel: bool = False) -> None:
        """Refuse new calls; workers finish the queued ones (or cancel them), then exit."""
        with self.lock:
            self.shutdown = True
            if cancel:
                self.drain(None)
            self.queue.put(None)  # one sentinel: each worker passes it on

    def join(self) -> None:
        """Wait for every worker thread started so far (but the calling one)."""
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join()

    def drain(self, exc: BaseException | None) -> None:
        """Fail (or cancel, when ``exc`` is None) every queued item."""
        while True:
            try:
                item = self.queue.get_nowait()
            except Empty:
                return
            if item is None or isinstance(item, _Retire):
                continue
            if exc is None:
                item.future.cancel()
            elif item.future.set_running_or_notify_cancel():
                item.future.set_exception(exc)

    def break_with(self, exc: BrokenWorkerError) -> None:
        """A worker died: fail every queued call with the first such error, refuse new ones."""
        with self.lock:
            if self.broken is None:
                self.broken = exc
            self.drain(self.broken)
            self.queue.put(None)

    def worker_starting(self) -> None:
        """Count a worker thread about to start; called with the lock held."""
        if self.live == 0:
            _lifetime.track(self)
        self.live += 1
        self.workers += 1

    def worker_gone(self) -> None:
        """Count a worker thread that exited (or failed to start); called with the lock held."""
        self.live -= 1
        if self.live == 0:
            _lifetime.untrack(self)


def work(
    state: PoolState, ctx: WorkerContext, kind: str, name: str, scheduling: Scheduling = NORMAL
) -> None:
    """A worker thread's body: run queued calls in ``ctx`` until a sentinel or a break."""
    started = False
    try:
        scheduling.apply_to_thread()  # before the context starts a process or interpreter
        while True:
            try:
                item = state.queue.get_nowait()
            except Empty:
                # About to wait: offer this worker to submit(), which starts a new
                # worker only when no token is left (as ThreadPoolExecutor does).
                state.idle.release()
                item = state.queue.get()
            if item is None:
                state.queue.put(None)  # wake the next worker too
                return
            if isinstance(item, _Retire):
                with state.lock:
                    state.retiring -= 1
                    state.workers -= 1
                # Take back an idle token (this worker's, or an equivalent one), so
                # submit() does not count on a worker that is gone.
                state.idle.acquire(blocking=False)
                return
            if not item.future.set_running_or_notify_cancel():
                continue
            if not started:
                # The call that made this worker start is claimed first: it counts
                # as running while its process or interpreter starts (as a call
                # ProcessPoolExecutor has queued to its workers does), so
                # shutdown(cancel_futures=True) lets it finish.
                started = True
                try:
                    ctx.initialize()
                except BaseException as exc:
                    broken = _start_failure(exc, kind, name)
                    state.break_with(broken)  # first: whoever sees the failure can no longer submit
                    item.future.set_exception(broken)
                    return
            try:
                result = ctx.run(item.fn, item.args, item.kwargs)
            except BrokenWorkerError as exc:
                state.break_with(exc)  # first: whoever sees the failure can no longer submit
                item.future.set_exception(exc)
                return
            except BaseException as exc:
                item.future.set_exception(exc)
            else:
                item.future.set_result(result)
                result = None
            del item  # drop references to the arguments and result now
            # A plain attribute read: set once under the lock, never cleared.
            if state.broken is not None:
                return
    finally:
        try:
            ctx.finalize()
        finally:
            with state.lock:
                state.worker_gone()


def _start_failure(exc: BaseException, kind: str, name: str) -> BrokenWorkerError:
    if isinstance(exc, BrokenWorkerError):
        return exc
    broken = BrokenWorkerError(
        f"{kind} executor {name!r}: a worker failed to start: {type(exc).__name__}: {exc}",
        name=name,
    )
    broken.__cause__ = exc
    return broken
