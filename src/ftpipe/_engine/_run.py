"""``Run``: the running state of one pipeline, what its threads hold.

::

    Source ──► ch0 ──► stage 0 workers ──► ch1 ──► ... ──► stage k workers ──► sink
    (_source)          (_plan: N threads per stage; each a StageRuntime, _stage)

    Run ── Control for every worker: fail(exc, note, stage, seq): the first error wins;
      │                                the stage and those before it stop, its output is
      │                                cut at the failing input (earlier outputs arrive)
      │                              thread(target, name): none once stopping; each
      │                                lowers itself to the pipeline's priority first
      ├── stop(): every channel stops, the stop future wakes executor waits
      ├── join(): every thread, then the executors this run created
      └── stats(): the source's and every stage's counters, merged

Threads hold the ``Run``, never the ``Pipeline``, so an abandoned pipeline is
collected and its finalizer stops the run.  Every live run is also known here,
so interpreter exit stops them (``stop_all_pipelines``).
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future
from functools import partial
from time import perf_counter

from .._priority import start_forkserver_here
from ._channel import Channel, Stopped
from ._config import PipelineConfig, StageConfig
from ._executor_kinds import ExecutorKind, executor_kind
from ._plan import start_stage, worker_plan
from ._resize import resize_stage, switch_executor
from ._resumable import resumable
from ._setup import create_executor
from ._source import Source
from ._stage import StageRuntime
from ._stats import PipelineStats, WorkerCounters, find_bottleneck, merge
from ._tuner import Tuner
from ._workforce import Workforce

__all__ = ["Run", "stop_all_pipelines"]

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
        self.config = config  # for a resumed or continued run: from where it starts
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
        # The counters of the runs this pipeline ran before this one (see carry_over).
        self._earlier: list[list[WorkerCounters]] = [[] for _ in range(len(config.stages) + 1)]
        self.channels: list[Channel] = []
        self.stages: list[StageRuntime] = []
        self.tracked = resumable(config)  # checkpoints: every stage's channel keeps a ledger
        self.source = Source(config, tracked=self.tracked)
        self.channels.append(self.source.channel)
        inbox = self.source.channel
        stages = config.stages
        # Serializes resizes and executor switches (the tuner's and the user's).
        self.resize_lock = threading.Lock()
        for i, cfg in enumerate(stages):
            last = i == len(stages) - 1
            plan = worker_plan(cfg)
            outbox = Channel(
                config.sink_buffer_size if last else cfg.buffer_size,
                ordered=cfg.ordered,
                producers=plan.count,
            )
            if self.tracked:
                outbox.track(cfg.resume_drop, cfg.resume_skip)
                inbox.skip(cfg.resume_skip)  # done by the checkpointed run (ordered=False)
            self.channels.append(outbox)
            workforce = Workforce(cfg.concurrency, plan.count, plan.per_worker)
            stage = StageRuntime(cfg, i, inbox, outbox, self, self._executor_for(cfg), workforce)
            stage.make = plan.make
            self.stages.append(stage)
            inbox = outbox
        self.sink = inbox
        tuned = any(s.auto_concurrency or s.auto_executor for s in stages)
        self.tuner = (
            Tuner(self.stages, self._stopping, self.resize_lock, self._switch, resize_stage)
            if tuned
            else None
        )

    def carry_over(self, before: Run) -> None:
        """Count ``before``'s work in this run's statistics (a pipeline's next run)."""
        self.started = before.started
        source = before.source.counters
        mine = [[] if source is None else [source]] + [list(s.counters) for s in before.stages]
        self._earlier = [a + b for a, b in zip(before._earlier, mine, strict=True)]

    def _executor_for(self, cfg: StageConfig) -> Executor | None:
        if cfg.executor is None or isinstance(cfg.executor, Executor):
            return cfg.executor
        kind = executor_kind(cfg.executor)
        assert kind is not None, "validated by the builder"
        # Created here, in the consumer's thread: a process executor starts its
        # forkserver from a thread that was never lowered.
        executor = create_executor(kind, cfg, self.config.scheduling)
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
        scheduling = self.config.scheduling

        def body() -> None:
            try:
                # First, before any work: the pipeline's priority and CPU pinning.
                scheduling.apply_to_thread()
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
            if self.tuner is not None:
                if not self.config.scheduling.is_normal and any(
                    s.auto_executor for s in self.config.stages
                ):
                    # The tuner may create a process pool from its lowered thread: the
                    # forkserver must not start there (it would lower every later child).
                    start_forkserver_here("forkserver")
                self.thread(partial(self.tuner.run, self.fail), "ftpipe-tuner")
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

    def _switch(self, stage: StageRuntime, name: str | None, n: int) -> None:
        """Move ``stage`` to ``n`` workers of kind ``name`` (None: threads); resize lock held."""
        kind = None if name is None else executor_kind(name)
        assert name is None or kind is not None, "the tuner checks the kind exists"

        def own(executor: Executor, kind: ExecutorKind) -> None:
            with self._lock:
                self._owned.append((executor, kind))
            if self._stopping.is_set():
                self._shutdown_executors()  # stopped meanwhile: join() may have run already

        switch_executor(stage, kind, n, own, self.config.scheduling)

    def resize_locked(self, name: str, n: int) -> None:
        """Give the running stage ``name`` ``n`` workers (see ``_resize``); the caller
        holds ``resize_lock``."""
        stage = next(s for s in self.stages if s.config.name == name)
        resize_stage(stage, n)

    def stats(self) -> PipelineStats:
        source = self.source.stats(self._earlier[0])
        stages = [] if source is None else [source]
        for stage, earlier in zip(self.stages, self._earlier[1:], strict=True):
            cfg = stage.config
            stages.append(
                merge(
                    cfg.name,
                    stage.workforce.size,
                    stage.executor_name,
                    earlier + list(stage.counters),
                    stage.outbox.occupancy(),
                    stage.outbox.capacity,
                    tuning=stage.tuning,
                )
            )
        frozen = tuple(stages)
        return PipelineStats(frozen, perf_counter() - self.started, find_bottleneck(frozen))
