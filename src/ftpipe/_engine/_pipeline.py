"""``Pipeline``: what the user holds; it starts a run, hands its results over, stops it.

::

    Pipeline (what the user holds)          Run (what the threads hold, _run.py)
      __iter__/__next__ ── sink.get() ──►     channels, stage runtimes, threads,
      stats(), resize(name, n) ───────────►   owned executors, first error
      close() / with-exit ───────────────►    stop(): stop channels, wake waiters
      garbage collection ── finalize ─────►   stop()  (threads never hold the Pipeline,
                                                       so an abandoned one is collected)
      cheap calls: __next__ runs them itself, no thread (_handover, _inline)
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from typing import Any

from .._validate import positive_int
from ._channel import EndOfStream, Stopped
from ._config import PipelineConfig
from ._handover import AGAIN, Handover
from ._inline import Inline, advanced, can_inline
from ._run import Run
from ._state import state_of, trim
from ._stats import PipelineStats

__all__ = ["Pipeline", "PipelineIterator"]


# Outputs taken between two trims of the checkpoint ledgers (see Channel.track).
_TRIM_EVERY = 1024


class Pipeline(Handover):
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
        self._fetched = config.start  # outputs taken from the sink (under the consumer lock)
        self._trimmed = config.start  # _fetched when the ledgers were last trimmed
        # Cheap stages in the consumer's thread (_handover, _inline): under the consumer lock.
        self._inline: Inline | None = None  # until the run goes to threads
        self._inline_error: BaseException | None = None  # raised once _local is empty

    @property
    def config(self) -> PipelineConfig:
        """The frozen description this pipeline runs."""
        return self._config

    def start(self) -> None:
        """Start the threads (``with`` and iteration call this for you).

        A pipeline that may run inline (``PipelineBuilder(inline=True)``, the default,
        and stages that allow it) starts none: ``next()`` calls its stages until
        they prove slow, then its threads start.

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
            if can_inline(self._config):  # no threads until its calls prove slow
                self._inline = Inline(run)
                return
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
            while True:
                if run is None or state == "finished" and not self._local:
                    raise StopIteration
                if self._inline is not None:
                    value = self._next_inline(self._inline)
                else:
                    value = self._next_from(run)
                if value is not AGAIN:
                    return value
                with self._lock:  # the run changed (inline, or back to threads)
                    run, state = self._run, self._state

    def _next_from(self, run: Run) -> Any:
        """The next output of a run on threads (consumer lock held)."""
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
        self._fetched += len(values)
        self._local.extend(values[1:])
        if run.tracked and self._fetched - self._trimmed >= _TRIM_EVERY:
            # The ledgers forget what is before the consumer (values[0] is its now).
            self._trimmed = self._fetched
            outboxes = [stage.outbox for stage in run.stages]
            consumed = self._fetched - len(self._local) - run.config.start
            trim(run.config, consumed, outboxes, run.source.snapshots)
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
        with self._consumer_lock:
            # Outputs taken from the sink that the consumer never had: a checkpoint
            # taken after close() must not count them as consumed.
            self._fetched -= len(self._local)
            self._local.clear()

    def resize(self, stage: str, n: int) -> None:
        """Give the running stage ``stage`` ``n`` workers (or calls in flight, for async).

        Growing starts workers at once; shrinking lets the surplus finish the
        batch in hand and leave, so no item is lost, repeated or reordered.  On
        a pool the pipeline created (``executor="process"``) the pool grows or
        shrinks with it.  A stage whose input already ended keeps the workers it has.

        Raises:
            ValueError: No stage has that name, ``n`` is below 1, or the stage
                cannot be resized (an aggregate, or an executor instance you
                supplied); the message says which.
            TypeError: ``n`` is not an int.
            RuntimeError: The pipeline is not running (start it first) or has finished.
        """
        names = [s.name for s in self._config.stages]
        if stage not in names:
            raise ValueError(f"resize: no stage named {stage!r}; stages: {names}")
        positive_int(n, f"resize({stage!r}): n")
        with self._lock:
            run, state = self._run, self._state
        if state == "new" or run is None:
            raise RuntimeError(
                "resize: the pipeline is not running yet; start it first "
                "(a with-block, iteration or start()), then resize its stages"
            )
        if state == "finished":
            raise RuntimeError(
                "resize: the pipeline has finished; only a running one can be resized"
            )
        while True:
            with run.resize_lock:
                if self._run is run and self._inline is None:
                    run.resize_locked(stage, n)
                    return
            with self._consumer_lock:  # waits for an inline batch in progress
                inline = self._inline
                if inline is not None and inline.run is run:
                    self._to_threads(run, inline.iterator, {stage: n}, f"resized to {n}")
                    return
            with self._lock:
                run, state = self._run, self._state
            if run is None or state == "finished":
                raise RuntimeError(
                    "resize: the pipeline has finished; only a running one can be resized"
                )

    def __repr__(self) -> str:
        with self._lock:
            state, run = self._state, self._run
        if run is None:
            stages = [(s.name, s.executor_name, s.concurrency, "") for s in self._config.stages]
        else:
            stages = [
                (s.config.name, s.executor_name, s.workforce.size, s.tuning) for s in run.stages
            ]
        parts = [
            f"{name!r}: {executor} x{size}" + (f" [{tuning}]" if tuning else "")
            for name, executor, size, tuning in stages
        ]
        return f"<Pipeline {state}: {'; '.join(parts) or 'no stages'}>"

    def state_dict(self) -> dict[str, Any]:
        """Return a checkpoint: ``builder.build(state=...)`` resumes where this pipeline is.

        Call it between two ``next()`` calls of the one consumer (or after the end,
        or after ``close()``).  The resumed pipeline yields exactly what this one
        would have yielded next, with the same ``item_seed()`` for every item.  It
        covers ordered pipelines of every stage kind and executor over a sequence
        (list, tuple, range, a dataset with ``__len__`` and ``__getitem__``) or a
        source with ``state_dict()`` and ``load_state_dict()``, and, with nothing
        lost or repeated (in completion order), one ``ordered=False`` stage that
        makes one output per input; see docs/checkpointing.md.

        Raises:
            ValueError: The pipeline is not one of those (the message says why).
        """
        with self._consumer_lock:
            return self._checkpoint()

    def _checkpoint(self) -> dict[str, Any]:
        done = self._fetched - len(self._local)  # outputs the consumer took, all runs
        with self._lock:
            run = self._run
        # Inline, or (the run is not the pipeline's first: it went on from inline) before it.
        went_on = run is not None and run.config is not self._config and done <= run.config.start
        if self._inline is not None or went_on:
            # Nothing was in flight: a position.
            return state_of(advanced(self._config, done - self._config.start), 0, None, None)
        config = self._config if run is None else run.config
        consumed = done - config.start
        if run is None or not run.tracked:
            return state_of(config, consumed, None, None)
        # Nothing taken yet: the point this run started from, as it was given.
        outboxes = [stage.outbox for stage in run.stages] if consumed else None
        return state_of(config, consumed, outboxes, run.source.snapshots)

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
