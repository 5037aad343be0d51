"""The one seam every ftpipe executor is built on: worker threads running a context.

A ``WorkerPool`` is a ``concurrent.futures.Executor`` whose workers are threads;
each worker thread owns one *worker context* that decides where a call really
runs (like CPython 3.14's thread / interpreter pools):

- ``ThreadContext`` runs it on the worker thread itself;
- ``InterpreterContext`` runs it in the thread's own subinterpreter;
- ``ProcessContext`` sends it to the thread's own child process and waits.

::

    submit(fn, *args) --> work queue --> worker thread 1: ctx.initialize(); ctx.run(...) ...
                          (SimpleQueue)   worker thread 2: ...
                                          sentinel None: ctx.finalize(), thread exits

A context that finds its worker dead raises ``BrokenWorkerError``; the pool then
fails every queued call with it and refuses new ones, like
``concurrent.futures.process.BrokenProcessPool``.

``shutdown()`` waits for running calls, as the ``Executor`` contract says, and
so does interpreter exit: every call submitted before it runs to the end, even
after ``shutdown(wait=False)`` (worker threads are daemons, so an exit hook
joins them; see ``_join_at_exit``).  A pipeline that stops the executors it
created calls ``_terminate()`` instead,
which cancels what is queued and abandons what runs (``ctx.interrupt()``: a
worker process is killed mid-call; a thread or a subinterpreter cannot be
interrupted, so it finishes its call in the background and then stops).
"""

from __future__ import annotations

import atexit
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import BrokenExecutor, Executor, Future
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any, Protocol

from .._engine._calls import call_chunk

__all__ = ["BrokenWorkerError", "ThreadExecutor", "WorkerContext", "WorkerPool"]


class BrokenWorkerError(BrokenExecutor):
    """A worker of an ftpipe executor died or could not start.

    Attributes:
        name: The executor's name (a pipeline stage name when the engine made it).
        exitcode: The worker process's exit code (negative: killed by a signal),
            or None when the worker was not a process.
    """

    def __init__(self, message: str, *, name: str = "", exitcode: int | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_broken, (str(self), self.name, self.exitcode))


def _rebuild_broken(message: str, name: str, exitcode: int | None) -> BrokenWorkerError:
    return BrokenWorkerError(message, name=name, exitcode=exitcode)


class WorkerContext(Protocol):
    """Where one worker thread runs its calls."""

    def initialize(self) -> None:
        """Prepare the worker (start a process, create an interpreter, run the initializer)."""

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Return ``fn(*args, **kwargs)`` or raise its exception (or ``BrokenWorkerError``)."""

    def interrupt(self) -> bool:
        """Abandon the running call where that is possible; called from any thread.

        Returns True when the worker will stop promptly once told to (it was
        idle, or its call was cut short), False when it may still be inside a
        call that cannot be interrupted.
        """

    def finalize(self) -> None:
        """Release the worker; called once, also after a failed ``initialize``."""


@dataclass(eq=False)
class _WorkItem:
    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(eq=False)
class _State:
    """What worker threads share with their pool; threads hold this, not the pool."""

    queue: SimpleQueue[_WorkItem | None] = field(default_factory=SimpleQueue)
    # Guards shutdown/broken flags against submit(), so no item slips in after a
    # drain; also guards threads and live.
    lock: threading.Lock = field(default_factory=threading.Lock)
    idle: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    shutdown: bool = False
    broken: BrokenWorkerError | None = None
    threads: list[threading.Thread] = field(default_factory=list)
    live: int = 0  # worker threads not yet finished; the state is in _live_states while > 0

    def stop(self, cancel: bool = False) -> None:
        """Refuse new calls; workers finish the queued ones (or cancel them), then exit."""
        with self.lock:
            self.shutdown = True
            if cancel:
                self.drain(None)
            self.queue.put(None)  # one sentinel: each worker passes it on

    def drain(self, exc: BaseException | None) -> None:
        """Fail (or cancel, when ``exc`` is None) every queued item."""
        while True:
            try:
                item = self.queue.get_nowait()
            except Empty:
                return
            if item is None:
                continue
            if exc is None:
                item.future.cancel()
            elif item.future.set_running_or_notify_cancel():
                item.future.set_exception(exc)


# How long _terminate() waits for workers it expects to stop promptly (a killed
# child's worker thread reaps it and sweeps its segments): a way out, not a pace.
_TERMINATE_JOIN_S = 5.0

# Pools whose worker threads are still running, whatever became of the pool
# object (shut down with wait=False, or dropped): interpreter exit waits for them.
# Lock order: a state's lock, then _live_lock.
_live_states: set[_State] = set()
_live_lock = threading.Lock()
# Set once by the exit hook, never cleared: submit() refuses new calls after it.
_exiting = False


def _join_at_exit() -> None:
    """Interpreter exit: run every call already submitted to the end, then stop the workers.

    The ``Executor.shutdown`` contract: the program does not exit until all
    pending futures are done.  Worker threads are daemons (so that ``threading``
    does not join them before the atexit hooks, where pipelines are stopped), so
    this hook does what ``ThreadPoolExecutor``'s does: wake each worker with a
    stop sentinel behind the queued calls and join it.  Each worker then stops
    its child process or destroys its subinterpreter.
    """
    global _exiting
    # Pipelines first: they stop the executors they created without waiting for
    # running calls (a stopping pipeline wants none of their results).
    from .._engine import stop_all_pipelines

    stop_all_pipelines(timeout=_PIPELINE_EXIT_S)
    with _live_lock:
        _exiting = True
        states = list(_live_states)
    for state in states:
        state.stop()
    for state in states:
        with state.lock:
            threads = list(state.threads)
        for thread in threads:
            thread.join()


# How long interpreter exit waits for pipelines' own threads (the executors they
# created are stopped either way).
_PIPELINE_EXIT_S = 2.0

# multiprocessing is imported first so this hook runs before its own exit hook
# (atexit is last-in, first-out): our children get a clean stop message first,
# rather than multiprocessing joining children that wait for one.
import multiprocessing.util  # noqa: E402,F401

atexit.register(_join_at_exit)


class WorkerPool(Executor):
    """A ``concurrent.futures.Executor`` whose worker threads each own a ``WorkerContext``.

    Subclasses override ``_make_context`` (and ``_kind``); everything else --
    queueing, lazy worker start, shutdown, cancellation, breaking -- lives here.

    Args:
        max_workers: Most worker threads (and processes / interpreters) at once.
        initializer: Called once in every worker before its first call.
        initargs: Arguments for ``initializer``.
        name: Names threads and errors; the engine passes the stage name.
    """

    _kind = "worker"
    _counter = itertools.count()

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        name: str | None = None,
    ) -> None:
        if max_workers is None:
            max_workers = self._default_workers()
        if isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise ValueError(f"max_workers must be an int greater than 0, got {max_workers!r}")
        if max_workers < 1:
            # concurrent.futures' own wording, which code written for it may match.
            raise ValueError(f"max_workers must be greater than 0, got {max_workers}")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable, got {initializer!r}")
        self._max_workers = max_workers
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._name = name or f"{type(self).__name__}-{next(self._counter)}"
        self._state = _State()
        # Appended together under the state's lock (see _start_worker).
        self._threads = self._state.threads
        self._contexts: list[WorkerContext] = []
        # Dropped without shutdown(): wake the workers, which hold only the state,
        # so they finish the queued calls and stop (ThreadPoolExecutor does the
        # same).  Only a sentinel, no lock: SimpleQueue.put is safe in a callback
        # that may run on any thread, even one inside this state's lock.
        weakref.finalize(self, self._state.queue.put, None).atexit = False

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
        from .._runtime import usable_cores

        return usable_cores()

    def _make_context(self) -> WorkerContext:
        raise NotImplementedError

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
            # _exiting: a plain read of a flag set once, before the exit hook
            # stops each state under its lock (which this submit then sees).
            if _exiting:
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
            state.queue.put(_WorkItem(future, fn, args, kwargs))
            # An idle worker will take the item; otherwise start one, up to the limit.
            if not state.idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
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
            ValueError: ``chunksize`` is not a positive int.
            TimeoutError: A result is not ready ``timeout`` seconds after the call.
        """
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive int, got {chunksize!r}")
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
            target=_work,
            args=(state, ctx, self._kind, self._name),
            name=f"{self._name}-{len(self._threads)}",
            daemon=True,
        )
        if state.live == 0:
            with _live_lock:
                _live_states.add(state)
        state.live += 1
        try:
            thread.start()
        except BaseException:
            state.live -= 1
            if state.live == 0:
                with _live_lock:
                    _live_states.discard(state)
            raise
        self._threads.append(thread)
        self._contexts.append(ctx)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; stop every worker once the queue is empty.

        Args:
            wait: Block until every worker (thread, process, interpreter) is gone.
            cancel_futures: Cancel calls that have not started yet.
        """
        state = self._state
        state.stop(cancel=cancel_futures)
        with state.lock:
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

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


def _work(state: _State, ctx: WorkerContext, kind: str, name: str) -> None:
    started = False
    try:
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
                    _break(state, broken)  # first: whoever sees the failure can no longer submit
                    item.future.set_exception(broken)
                    return
            try:
                result = ctx.run(item.fn, item.args, item.kwargs)
            except BrokenWorkerError as exc:
                _break(state, exc)  # first: whoever sees the failure can no longer submit
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
            _worker_exited(state)


def _start_failure(exc: BaseException, kind: str, name: str) -> BrokenWorkerError:
    if isinstance(exc, BrokenWorkerError):
        return exc
    broken = BrokenWorkerError(
        f"{kind} executor {name!r}: a worker failed to start: {type(exc).__name__}: {exc}",
        name=name,
    )
    broken.__cause__ = exc
    return broken


def _worker_exited(state: _State) -> None:
    with state.lock:
        state.live -= 1
        if state.live == 0:
            with _live_lock:
                _live_states.discard(state)


def _break(state: _State, exc: BrokenWorkerError) -> None:
    with state.lock:
        if state.broken is None:
            state.broken = exc
        state.drain(state.broken)
        state.queue.put(None)


class ThreadContext:
    """Run calls on the worker thread itself."""

    def __init__(self, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
        self._initializer = initializer
        self._initargs = initargs

    def initialize(self) -> None:
        if self._initializer is not None:
            self._initializer(*self._initargs)

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return fn(*args, **kwargs)

    def interrupt(self) -> bool:
        return False  # a thread cannot be interrupted; an idle one stops by itself

    def finalize(self) -> None:
        pass


class ThreadExecutor(WorkerPool):
    """Run calls in threads of this process (parallel for pure Python on 3.13t only).

    The same constructor as ``InterpreterExecutor`` and ``ProcessExecutor``, so a
    stage can switch executors by changing one name.
    """

    _kind = "thread"

    @staticmethod
    def _default_workers() -> int:
        from .._runtime import usable_cores

        return min(32, usable_cores() + 4)  # as ThreadPoolExecutor: I/O-bound work waits

    def _make_context(self) -> WorkerContext:
        return ThreadContext(self._initializer, self._initargs)
