"""``Pipeline``: what the user holds; it starts a run, hands its results over, stops it.

::

    Pipeline (what the user holds)          Run (what the threads hold, _run.py)
      __iter__/__next__ ── sink.get() ──►     channels, stage runtimes, threads,
      stats()                                 owned executors, first error
      close() / with-exit ───────────────►    stop(): stop channels, wake waiters
      garbage collection ── finalize ─────►   stop()  (threads never hold the Pipeline,
                                                       so an abandoned one is collected)
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from time import perf_counter
from typing import Any

from ._channel import Channel, EndOfStream, Stopped
from ._config import PipelineConfig, StageConfig
from ._executor_kinds import ExecutorKind, executor_kind
from ._plan import start_stage, worker_plan
from ._source import Source
from ._stage import StageRuntime
from ._stats import PipelineStats, find_bottleneck, merge

__all__ = ["Pipeline", "PipelineIterator", "stop_all_pipelines"]

# Every run started and not yet joined, so interpreter exit can stop them (threads
# are daemons and would otherwise be frozen mid-call).  Weak: an abandoned run whose
# threads ended is collected.  Not a WeakSet: it is not thread-safe (iterating one
# while another thread adds raises "Set changed size during iteration", on every
# build), and its weakref callbacks can run in any thread at any time.  Plain weak
# references without callbacks, keyed by id(), pruned when a run is added.
_live_lock = threading.Lock()  # guards _live_runs
_live_runs: dict[int, weakref.ref[Run]] = {}


def _register(run: Run) -> None:
    with _live_lock:
        for key in [key for key, ref in _live_runs.items() if ref() is None]:
            del _live_runs[key]
        _live_runs[id(run)] = weakref.ref(run)


def _unregister(run: Run) -> None:
    with _live_lock:
        ref = _live_runs.get(id(run))
        if ref is not None and ref() is run:
            del _live_runs[id(run)]


def _live() -> list[Run]:
    with _live_lock:
        refs = list(_live_runs.values())
    return [run for run in (ref() for ref in refs) if run is not None]


def stop_all_pipelines(timeout: float | None = None) -> None:
    """Stop every running pipeline (used at interpreter exit).

    Args:
        timeout: None: signal them and return at once.  A number: also wait up
            to that many seconds, in all, for their threads, then release the
            executors they created (which never waits for running calls).
    """
    runs = _live()
    for run in runs:
        run.stop()
    if timeout is None:
        return
    deadline = perf_counter() + timeout
    for run in runs:
        run.join(timeout=max(0.0, deadline - perf_counter()))


@atexit.register
def _stop_all_at_exit() -> None:
    stop_all_pipelines(timeout=2.0)


class Run:
    """The running state of one pipeline: what its threads reference."""

    def __init__(self, config: PipelineConfig) -> None:
        self._config = config
        self.stop_future: Future[None] = Future()
        self._lock = threading.Lock()  # guards _error, _threads, _live, _owned
        self._error: BaseException | None = None
        self._error_at: tuple[int, int] | None = None  # (stage index, input seq)
        self._error_note: str | None = None  # the note fail() added to _error
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._live = 0
        self._owned: list[tuple[Executor, ExecutorKind]] = []
        self.started = perf_counter()
        self.channels: list[Channel] = []
        self.stages: list[StageRuntime] = []
        self.source = Source(config)
        self.channels.append(self.source.channel)
        inbox = self.source.channel
        stages = config.stages
        for i, cfg in enumerate(stages):
            last = i == len(stages) - 1
            outbox = Channel(
                config.sink_buffer_size if last else cfg.buffer_size,
                ordered=cfg.ordered,
                producers=worker_plan(cfg).count,
            )
            self.channels.append(outbox)
            self.stages.append(StageRuntime(cfg, i, inbox, outbox, self, self._executor_for(cfg)))
            inbox = outbox
        self.sink = inbox

    def _executor_for(self, cfg: StageConfig) -> Executor | None:
        if cfg.executor is None or isinstance(cfg.executor, Executor):
            return cfg.executor
        kind = executor_kind(cfg.executor)
        assert kind is not None, "validated by the builder"
        executor = kind.create(cfg.concurrency, cfg.name)
        self._owned.append((executor, kind))
        return executor

    # -- Control protocol (used by workers) --------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def fail(
        self, exc: BaseException, note: str | None = None, *, stage: int | None = None, seq: int = 0
    ) -> None:
        """Record an error (adding ``note`` to it) and stop the pipeline.

        With ``stage`` (the failing stage's index, -1 for the source) only that
        stage and those before it stop; the failing stage's output is cut at
        input ``seq``, so everything produced before the failure still reaches
        the consumer, in order, and the error is raised after it.  Without
        ``stage`` everything stops at once.

        The first error wins, except that a failure at an earlier input of the
        same stage replaces it.  Only the recorded error is annotated, once:
        several workers may fail with one shared exception object (an executor
        failing every queued call), and then the note names the earliest input.
        """
        if self._stopping.is_set():
            # Failures after a stop was asked for (an executor shut down at exit,
            # a call cut short by close()) are its consequences, not errors.
            return
        with self._lock:
            current = self._error_at
            if self._error is None or (
                stage is not None
                and current is not None
                and current[0] == stage
                and seq < current[1]
            ):
                if note is not None:
                    notes = getattr(exc, "__notes__", None)
                    if exc is self._error and notes and self._error_note in notes:
                        # The same shared exception, now at an earlier input: its
                        # note must name that input, not the later one.
                        notes[notes.index(self._error_note)] = note
                    elif exc is not self._error:
                        exc.add_note(note)
                    self._error_note = note
                self._error = exc
                self._error_at = None if stage is None else (stage, seq)
        if stage is None:
            self.stop()
            return
        for channel in self.channels[: stage + 1]:
            channel.stop()
        self.channels[stage + 1].cut(seq)

    def thread(self, target: Callable[[], None], name: str) -> None:
        def body() -> None:
            try:
                target()
            finally:
                self._thread_exited()

        thread = threading.Thread(target=body, name=name, daemon=True)
        with self._lock:
            # Started under the lock, so join() never sees a thread it cannot join;
            # none is started once stopping (close() racing start()).
            if self._stopping.is_set():
                raise Stopped
            self._threads.append(thread)
            self._live += 1
            thread.start()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        _register(self)
        try:
            self.source.start(self)
            for stage in self.stages:
                start_stage(stage)
        except Stopped:
            pass  # closed while starting: what did start is stopping already
        except BaseException:
            self.stop()
            raise

    @property
    def error(self) -> BaseException | None:
        with self._lock:
            return self._error

    def stop(self) -> None:
        """Signal every thread to finish; returns at once (see ``join``)."""
        self._stopping.set()
        for channel in self.channels:
            channel.stop()
        if not self.stop_future.done():
            try:
                self.stop_future.set_result(None)
            except Exception:  # noqa: BLE001 - another thread set it first
                pass

    def join(self, timeout: float | None = None) -> None:
        """Wait for every thread, then shut down the executors this run created."""
        with self._lock:
            threads = list(self._threads)
        current = threading.current_thread()
        deadline = None if timeout is None else perf_counter() + timeout
        for thread in threads:
            if thread is not current:
                thread.join(None if deadline is None else max(0.0, deadline - perf_counter()))
        self._shutdown_executors()
        _unregister(self)

    def _thread_exited(self) -> None:
        with self._lock:
            self._live -= 1
            last = self._live == 0
        if last and self._stopping.is_set():
            # An abandoned pipeline has no one to call join(); its last thread
            # releases the executors it created.
            self._shutdown_executors()

    def _shutdown_executors(self) -> None:
        with self._lock:
            owned, self._owned = self._owned, []
        for executor, kind in owned:
            # Nobody wants the results of calls still running: a kind that can
            # abandon them (a worker process killed mid-call) does, so closing
            # never waits for a long call.
            if kind.stop is not None:
                kind.stop(executor)
            else:
                executor.shutdown(wait=True, cancel_futures=True)

    def stats(self) -> PipelineStats:
        source = self.source.stats()
        stages = [] if source is None else [source]
        for stage in self.stages:
            cfg = stage.config
            stages.append(
                merge(
                    cfg.name,
                    cfg.concurrency,
                    cfg.executor_name,
                    list(stage.counters),
                    stage.outbox.occupancy(),
                    stage.outbox.capacity,
                )
            )
        frozen = tuple(stages)
        return PipelineStats(frozen, perf_counter() - self.started, find_bottleneck(frozen))


class Pipeline:
    """A built pipeline: iterate it for results; ``with`` starts and stops it.

    A pipeline runs once.  Leaving the ``with`` block, ``close()``, ``break``
    followed by garbage collection, an exception or Ctrl-C in the consumer, and
    interpreter exit all stop it and join its threads.

    Example:
        >>> import ftpipe
        >>> with ftpipe.PipelineBuilder().add_source(range(3)).pipe(str).build() as p:
        ...     list(p)
        ['0', '1', '2']
    """

    def __init__(self, config: PipelineConfig) -> None:
        self._config = config
        self._lock = threading.Lock()  # guards _state and _run
        self._consumer_lock = threading.Lock()  # one consumer at a time drains the sink
        self._state = "new"  # new -> running -> finished (ended, failed or closed)
        self._run: Run | None = None
        self._local: deque[Any] = deque()

    @property
    def config(self) -> PipelineConfig:
        """The frozen description this pipeline runs."""
        return self._config

    def start(self) -> None:
        """Start the threads (``with`` and iteration call this for you).

        Raises:
            RuntimeError: The pipeline already ran; build a new one.
        """
        with self._lock:
            if self._state == "running":
                return
            if self._state == "finished":
                raise RuntimeError(
                    "this pipeline already ran; pipelines run once: build a new one from the builder"
                )
            run = Run(self._config)
            self._run = run
            self._state = "running"
            # Stop the threads if the user drops the pipeline without closing it.
            weakref.finalize(self, run.stop)
        run.start()

    def __enter__(self) -> Pipeline:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> PipelineIterator:
        with self._lock:
            state = self._state
        if state == "finished":
            raise RuntimeError(
                "this pipeline already ran; pipelines run once: build a new one from the builder"
            )
        if state == "new":
            self.start()
        return PipelineIterator(self)

    def __next__(self) -> Any:
        # deque.popleft is atomic (internally locked on free-threaded builds), so
        # concurrent consumers each get distinct items without taking our lock.
        try:
            return self._local.popleft()
        except IndexError:
            return self._refill()

    def _refill(self) -> Any:
        with self._consumer_lock:
            try:  # another consumer may have refilled while we waited for the lock
                return self._local.popleft()
            except IndexError:
                pass
            with self._lock:
                run, state = self._run, self._state
            if state == "new":
                self.start()
                with self._lock:
                    run = self._run
            if run is None or state == "finished" and not self._local:
                raise StopIteration
            try:
                _, values = run.sink.get(run.sink.capacity)
            except (EndOfStream, Stopped):
                values = None
            if values is None:
                # Raised outside the except clause: the error keeps its own __cause__
                # (a worker's remote traceback) and gains no engine context.
                error = run.error
                self._finish(holding_consumer_lock=True)
                if error is not None:
                    raise error
                raise StopIteration
            self._local.extend(values[1:])
            return values[0]

    def _finish(self, *, holding_consumer_lock: bool = False) -> None:
        with self._lock:
            self._state = "finished"
            run = self._run
        if run is None:
            return
        run.stop()
        if holding_consumer_lock:
            run.join()
        else:
            # A consumer blocked in sink.get() wakes up (Stopped) and leaves;
            # taking its lock guarantees no thread is inside a channel at join.
            with self._consumer_lock:
                run.join()

    def close(self) -> None:
        """Stop the pipeline and join every thread (idempotent)."""
        with self._lock:
            if self._state == "new":
                self._state = "finished"
                return
        self._finish()
        self._local.clear()

    def stats(self) -> PipelineStats:
        """Return a frozen snapshot of per-stage statistics (safe from any thread)."""
        with self._lock:
            run = self._run
        if run is None:
            return PipelineStats((), 0.0, None)
        return run.stats()


class PipelineIterator:
    """An iterator over a running pipeline's output (``iter(pipeline)``).

    Several threads may each hold one: every output item goes to exactly one of them.
    """

    __slots__ = ("_local", "_pipeline")

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._local = pipeline._local

    def __iter__(self) -> PipelineIterator:
        return self

    def __next__(self) -> Any:
        try:
            return self._local.popleft()
        except IndexError:
            return self._pipeline._refill()
