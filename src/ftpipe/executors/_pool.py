"""``WorkerPool``: the ``concurrent.futures.Executor`` every ftpipe executor is.

Its workers are threads; each owns one *worker context* (``_context``) that
decides where a call really runs, like CPython 3.14's thread / interpreter pools:

- ``ThreadContext`` runs it on the worker thread itself (``_thread``);
- ``InterpreterContext`` runs it in the thread's own subinterpreter (``_interpreter``);
- ``ProcessContext`` sends it to the thread's own child process and waits (``_process``).

::

    submit(fn, *args) --> work queue --> worker thread 1: ctx.initialize(); ctx.run(...) ...
                          (SimpleQueue)   worker thread 2: ...
                                          sentinel None: ctx.finalize(), thread exits

Queueing, lazy worker start, shutdown, cancellation and breaking live here and
in ``_worker`` (the threads' loop); how long workers outlive their pool, in
``_lifetime``.  A context that finds its worker dead raises
``BrokenWorkerError``; the pool then fails every queued call with it and
refuses new ones, like ``concurrent.futures.process.BrokenProcessPool``.

``shutdown()`` waits for running calls, as the ``Executor`` contract says, and
so does interpreter exit: every call submitted before it runs to the end, even
after ``shutdown(wait=False)``.  A pipeline that stops the executors it created
calls ``_terminate()`` instead, which cancels what is queued and abandons what
runs (``ctx.interrupt()``: a worker process is killed mid-call; a thread or a
subinterpreter cannot be interrupted, so it finishes its call in the background
and then stops).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import Any

from .._engine._calls import call_chunk
from .._engine._context import StageStart
from .._priority import Scheduling
from .._runtime import usable_cores
from .._validate import positive_int
from . import _lifetime
from ._context import BrokenWorkerError, WorkerContext
from ._worker import RETIRE, PoolState, WorkItem, work

__all__ = ["WorkerPool"]

# How long _terminate() waits for workers it expects to stop promptly (a killed
# child's worker thread reaps it and removes its segments): a way out, not a pace.
_TERMINATE_JOIN_S = 5.0


class WorkerPool(Executor):
    """A ``concurrent.futures.Executor`` whose worker threads each own a ``WorkerContext``.

    Subclasses override ``_make_context`` (and ``_kind``); everything else --
    queueing, lazy worker start, shutdown, cancellation, breaking -- lives here.

    Args:
        max_workers: Most worker threads (and processes / interpreters) at once.
        initializer: Called once in every worker before its first call.
        initargs: Arguments for ``initializer``.
        name: Names threads and errors; the engine passes the stage name.
        priority: ``"normal"`` (default), ``"background"`` or ``"idle"``: the
            scheduling priority of the worker threads (and of the processes and
            threads they start), as ``PipelineBuilder(priority=...)``; a worker
            process at ``"background"`` runs ``SCHED_IDLE`` on Linux.
        cpus: Pin the workers to these CPU ids; None: no pinning.

    Raises:
        TypeError: ``max_workers`` is not an int, ``initializer`` is not callable,
            or ``cpus`` is not a collection of ints.
        ValueError: ``max_workers`` is below 1, ``priority`` is unknown or ``cpus``
            names a CPU this process may not use.
    """

    _kind = "worker"
    # Numbers default names only: on 3.13t two pools created at the same instant may
    # draw the same one (next() on a count is not guaranteed atomic there), which is harmless.
    _counter = itertools.count()

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        name: str | None = None,
        priority: str = "normal",
        cpus: Iterable[int] | None = None,
    ) -> None:
        self._scheduling = Scheduling.of(priority, cpus, type(self).__name__)
        if max_workers is None:
            max_workers = self._default_workers()
        try:
            positive_int(max_workers, "max_workers")
        except ValueError:
            # concurrent.futures' own wording, which code written for it (and
            # CPython's own tests) may match.
            raise ValueError(f"max_workers must be greater than 0, got {max_workers}") from None
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable, got {initializer!r}")
        self._max_workers = max_workers
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._name = name or f"{type(self).__name__}-{next(self._counter)}"
        self._state = PoolState()
        # Appended together under the state's lock (see _start_worker).
        self._threads = self._state.threads
        self._contexts: list[WorkerContext] = []
        _lifetime.stop_when_dropped(self, self._state.queue)

    @property
    def name(self) -> str:
        """The name used for worker threads and in error messages."""
        return self._name

    @property
    def max_workers(self) -> int:
        """The most workers this executor runs at once."""
        return self._max_workers

    @staticmethod
    def _default_workers() -> int:
        return usable_cores()

    def _make_context(self) -> WorkerContext:
        raise NotImplementedError

    def _initializer_for(self, index: int) -> tuple[Callable[..., Any] | None, tuple[Any, ...]]:
        """The initializer and its arguments for worker ``index`` (called under the state's lock).

        A pipeline stage's pool gets a ``StageStart``, which each worker runs bound
        to its own index, so ``ftpipe.worker_info()`` there names the worker.
        """
        if isinstance(self._initializer, StageStart):
            # The size now: a worker a resize started sees the new one.
            return self._initializer.for_worker(index, self._max_workers), self._initargs
        return self._initializer, self._initargs

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; return its future.

        Raises:
            BrokenWorkerError: A worker died earlier; the executor is unusable.
            RuntimeError: The executor was shut down.
        """
        state = self._state
        with state.lock:
            if state.broken is not None:
                raise BrokenWorkerError(
                    str(state.broken), name=self._name, exitcode=state.broken.exitcode
                )
            if _lifetime.exiting():
                raise RuntimeError(
                    f"cannot schedule new futures after interpreter shutdown "
                    f"({self._kind} executor {self._name!r})"
                )
            if state.shutdown:
                raise RuntimeError(
                    f"cannot schedule new futures after shutdown "
                    f"({self._kind} executor {self._name!r})"
                )
            future: Future[Any] = Future()
            state.queue.put(WorkItem(future, fn, args, kwargs))
            # An idle worker will take the item; otherwise start one, up to the limit.
            if (
                not state.idle.acquire(blocking=False)
                and state.workers - state.retiring < self._max_workers
            ):
                self._start_worker()
        return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """Return an iterator over ``fn(*args)`` for the zipped ``iterables``, in order.

        Like ``ProcessPoolExecutor.map``: every call is submitted at once, and
        ``chunksize`` inputs travel per call to a worker (one round trip per
        chunk, not per input), which is what makes short calls cheap on
        processes and subinterpreters.  A failure raises when its result is
        reached, with the exception of that input.

        Raises:
            TypeError: ``chunksize`` is not an int.
            ValueError: ``chunksize`` is below 1.
            TimeoutError: A result is not ready ``timeout`` seconds after the call.
        """
        positive_int(chunksize, "chunksize")
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        deadline = None if timeout is None else timeout + time.monotonic()
        kind = "function" if len(iterables) == 1 else "star"
        inputs = iter(iterables[0]) if len(iterables) == 1 else zip(*iterables, strict=False)
        futures = [
            self.submit(call_chunk, fn, chunk, kind)
            for chunk in iter(lambda: list(itertools.islice(inputs, chunksize)), [])
        ]
        return _chunk_results(futures, deadline)

    def _start_worker(self) -> None:
        # Called with the state's lock held.
        state = self._state
        ctx = self._make_context()
        thread = threading.Thread(
            target=work,
            args=(state, ctx, self._kind, self._name, self._scheduling),
            name=f"{self._name}-{len(self._threads)}",
            daemon=True,
        )
        state.worker_starting()
        try:
            thread.start()
        except BaseException:
            state.worker_gone()
            raise
        self._threads.append(thread)
        self._contexts.append(ctx)

    def resize(self, max_workers: int) -> None:
        """Change how many workers run at once, while calls run.

        Growing lets ``submit`` start workers (lazily, as at first).  Shrinking
        queues one retirement per surplus worker: the next workers to finish a
        call take them and stop (their process or interpreter with them); no
        call is interrupted or lost.

        Raises:
            TypeError: ``max_workers`` is not an int.
            ValueError: ``max_workers`` is below 1.
        """
        positive_int(max_workers, "max_workers")
        state = self._state
        with state.lock:
            self._max_workers = max_workers
            surplus = state.workers - state.retiring - max_workers
            if state.shutdown or state.broken is not None:
                return
            for _ in range(surplus):
                state.retiring += 1
                state.queue.put(RETIRE)
            # A grown pool starts workers for calls already queued.
            queued = min(state.queue.qsize(), max_workers - (state.workers - state.retiring))
            for _ in range(max(0, queued)):
                self._start_worker()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; stop every worker once the queue is empty.

        Args:
            wait: Block until every worker (thread, process, interpreter) is gone.
            cancel_futures: Cancel calls that have not started yet.
        """
        self._state.stop(cancel=cancel_futures)
        if wait:
            self._state.join()

    def _healthy(self) -> bool:
        """Whether the pool can still take calls: not shut down, no worker found dead.

        For an owner that keeps a pool between uses (``_persistent``) and
        replaces one that would fail its next call.
        """
        with self._state.lock:
            return self._state.broken is None and not self._state.shutdown

    def _terminate(self, timeout: float = _TERMINATE_JOIN_S) -> None:
        """Stop now, for a pipeline closing the executor it created.

        Cancels queued calls and abandons running ones: a worker process inside
        a call is killed; a subinterpreter or thread inside one cannot be
        interrupted, so it finishes that call in the background (its result is
        dropped) and then stops -- its worker thread destroys the
        subinterpreter.  Waits (up to ``timeout`` seconds) only for the workers
        that stop promptly, so it returns within about a second whatever a
        call's length.
        """
        self.shutdown(wait=False, cancel_futures=True)
        with self._state.lock:
            workers = list(zip(self._threads, self._contexts, strict=True))
        prompt = [thread for thread, ctx in workers if ctx.interrupt()]
        deadline = time.monotonic() + timeout
        for thread in prompt:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} max_workers={self._max_workers}>"


def _chunk_results(futures: list[Future[Any]], deadline: float | None) -> Iterator[Any]:
    # A generator, so the caller's loop drives it; leaving it early cancels the rest.
    futures.reverse()
    try:
        while futures:
            future = futures.pop()
            if deadline is None:
                results, failures, _ = future.result()
            else:
                results, failures, _ = future.result(deadline - time.monotonic())
            for i, result in enumerate(results):
                if i in failures:
                    raise failures[i]
                yield result
    finally:
        for future in futures:
            future.cancel()
