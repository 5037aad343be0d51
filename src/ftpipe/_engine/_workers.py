"""Stage workers: the threads that move items from one channel to the next.

::

    source thread ──► ch0 ──► stage 0 workers ──► ch1 ──► ... ──► sink channel ──► consumer
    (_source.py)      (each stage: N threads calling fn, or N threads waiting on an
                       executor, or one thread running an event loop for async fn)

A worker takes a batch from its input channel, runs the stage function on each
item without holding any lock, and puts the batch's outputs with one call.
Batches adapt: a worker whose calls are slow takes one item at a time so the
stage's other workers are not left idle; a worker whose calls take microseconds
takes up to half its input buffer so the hand-off cost is paid per batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor, Future
from itertools import islice
from time import perf_counter
from typing import Any, Protocol

from . import _calls
from ._channel import Channel, EndOfStream, Stopped
from ._config import FnKind, StageConfig, StageKind
from ._stats import WorkerCounters

__all__ = ["BATCH_TARGET_S", "Control", "StageRuntime", "start_stage", "worker_count"]

# Marks an input dropped by on_error="skip" (None is a legitimate result).
_SKIPPED: Any = object()

# A call slower than this is worth one lock hand-off per item; faster calls are batched.
BATCH_TARGET_S = 200e-6


class Control(Protocol):
    """What workers need from the running pipeline."""

    stop_future: Future[None]

    @property
    def stopping(self) -> bool: ...

    def fail(
        self, exc: BaseException, note: str | None = None, *, stage: int | None = None, seq: int = 0
    ) -> None: ...

    def thread(self, target: Callable[[], None], name: str) -> None:
        """Start a pipeline thread; raises Stopped once the pipeline is stopping."""


class StageRuntime:
    """The live state of one stage, shared by its workers."""

    def __init__(
        self,
        config: StageConfig,
        index: int,
        inbox: Channel,
        outbox: Channel,
        control: Control,
        executor: Executor | None,
    ) -> None:
        self.config = config
        self.index = index
        self.inbox = inbox
        self.outbox = outbox
        self.control = control
        self.executor = executor
        self.counters: list[WorkerCounters] = []
        # Failures under on_error="skip" are rare; one lock keeps the total exact.
        self._failure_lock = threading.Lock()
        self._failures = 0

    def new_counters(self) -> WorkerCounters:
        counters = WorkerCounters()
        self.counters.append(counters)  # only while starting, from the starting thread
        return counters

    def failed(
        self, exc: BaseException, seq: int, counters: WorkerCounters, *, detail: str = ""
    ) -> None:
        """Apply the error policy to a call that failed after its retries.

        ``detail`` ends the note the consumer sees (e.g. which inputs a dead
        worker took with it).

        Raises:
            StageFailed: The policy stops the pipeline (the exception is recorded
                and outputs of later inputs will be dropped).
        """
        counters.failures += 1
        cfg = self.config
        exc = as_stage_error(exc)
        if (
            isinstance(exc, Exception)
            and not isinstance(exc, BrokenExecutor)
            and cfg.on_error == "skip"
        ):
            with self._failure_lock:
                self._failures += 1
                total = self._failures
            if cfg.max_failures is None or total <= cfg.max_failures:
                return
            note = (
                f"ftpipe: stage {cfg.name!r} had {total} failures, more than "
                f"max_failures={cfg.max_failures}; this is the last one (input #{seq})"
            )
        else:
            note = f"ftpipe: raised in stage {cfg.name!r} on input #{seq}{detail}"
        self.control.fail(exc, note, stage=self.index, seq=seq)
        raise StageFailed(seq)


class StageFailed(Exception):
    """Raised in a worker whose input failed for good: it puts what came before, then stops."""

    def __init__(self, seq: int) -> None:
        super().__init__(seq)
        self.seq = seq


def as_stage_error(exc: BaseException) -> BaseException:
    """Turn a StopIteration escaping a stage function into a RuntimeError (as PEP 479 does).

    Left alone it would end the consumer's ``for`` loop as if the pipeline were done.
    """
    if isinstance(exc, StopIteration):
        error = RuntimeError(f"stage function raised StopIteration: {exc!r}")
        error.__cause__ = exc
        return error
    return exc


def start_stage(stage: StageRuntime) -> None:
    """Start the workers of one stage: ``worker_count`` threads, the producers its output expects."""
    cfg = stage.config
    make: Callable[[StageRuntime], Callable[[], None]]
    numbered = False  # one thread per stage by design (aggregate, async) goes unnumbered
    if cfg.kind is StageKind.AGGREGATE:
        make = _aggregate_worker
    elif cfg.fn_kind in (FnKind.ASYNC, FnKind.ASYNC_GENERATOR) and stage.executor is None:
        from ._async_stage import async_worker as make
    elif stage.executor is not None:
        from ._executor_stage import executor_worker as make

        numbered = True
    else:
        make, numbered = _thread_worker, True
    for i in range(worker_count(cfg)):
        stage.control.thread(
            make(stage), f"ftpipe-{cfg.name}-{i}" if numbered else f"ftpipe-{cfg.name}"
        )


def guarded(stage: StageRuntime, body: Callable[[], None]) -> Callable[[], None]:
    """Wrap a worker's body: stop quietly, report engine bugs, always end its output share.

    ``Stopped`` (the pipeline is stopping) and ``StageFailed`` (the error is already
    recorded) end the worker quietly; anything else is an engine bug, which must
    reach the consumer rather than hang it.  Every worker is one producer of the
    stage's output channel, so it always calls ``producer_done``.
    """

    def run() -> None:
        try:
            body()
        except (Stopped, StageFailed):
            pass
        except BaseException as exc:  # noqa: BLE001 - an engine bug must not hang the consumer
            stage.control.fail(exc)
        finally:
            stage.outbox.producer_done()

    return run


def worker_count(cfg: StageConfig) -> int:
    """Threads a stage runs: each of them is one producer of the stage's output.

    An executor stage gets two submitting threads per worker when its executor's
    own workers bound how many calls run at once: a pool the pipeline creates
    from a kind name (``"process"``), or an executor instance that says it has
    at most ``concurrency`` workers (``max_workers``, as ftpipe's executors do).
    The next chunk then waits in the executor's queue while one runs, so a
    worker never idles during a round trip through the parent.  Any other
    executor (a Dask cluster, a larger shared pool) gets exactly ``concurrency``
    calls at once.
    """
    if cfg.kind is StageKind.AGGREGATE:
        return 1
    if cfg.fn_kind in (FnKind.ASYNC, FnKind.ASYNC_GENERATOR) and cfg.executor is None:
        return 1
    if isinstance(cfg.executor, str):
        return 2 * cfg.concurrency
    workers = getattr(cfg.executor, "max_workers", None)
    if isinstance(workers, int) and not isinstance(workers, bool) and workers <= cfg.concurrency:
        return 2 * cfg.concurrency
    return cfg.concurrency


def stage_fn(cfg: StageConfig) -> Callable[[Any], Any]:
    if cfg.kind is StageKind.DISAGGREGATE:
        return _calls.flatten
    assert cfg.fn is not None
    return cfg.fn


def _thread_worker(stage: StageRuntime) -> Callable[[], None]:
    cfg, inbox, outbox = stage.config, stage.inbox, stage.outbox
    counters = stage.new_counters()
    fn = stage_fn(cfg)
    generator = cfg.kind is StageKind.DISAGGREGATE or cfg.fn_kind is FnKind.GENERATOR
    stream = generator and cfg.retries == 0
    max_batch = max(1, inbox.capacity // (2 * cfg.concurrency))

    def collect(item: Any) -> list[Any]:
        return list(fn(item))

    def call(item: Any, seq: int) -> list[Any] | None:
        """A generator stage's outputs for ``item`` (retried); None once the policy dropped it."""
        try:
            return collect(item)
        except BaseException as exc:  # noqa: BLE001 - the policy decides
            result: list[Any] = retry(collect, item, seq, exc)
            return None if result is _SKIPPED else result

    def _call_all(items: list[Any], seq0: int, out: list[Any]) -> None:
        # The hot path: map() runs the calls without a Python-level loop.  On a
        # failure, list.extend keeps what was appended, which tells us the index.
        pos = 0
        while pos < len(items):
            base = len(out)
            try:
                out.extend(map(fn, items[pos:] if pos else items))
                failure: BaseException | None = None
            except BaseException as exc:  # noqa: BLE001 - the policy decides
                failure = exc
            i = pos + len(out) - base
            if failure is None:
                if i == len(items):
                    return
                # map() ended early: fn raised StopIteration, which extend() took
                # for the end of the batch.
                failure = RuntimeError("stage function raised StopIteration")
            result = retry(fn, items[i], seq0 + i, failure)
            if result is not _SKIPPED:
                out.append(result)
            pos = i + 1

    def retry(attempt: Callable[[Any], Any], item: Any, seq: int, exc: BaseException) -> Any:
        """Retry ``attempt(item)``, which failed with ``exc``; its result, or _SKIPPED once
        the policy dropped the input (an error policy of "raise" raises StageFailed)."""
        for _ in range(cfg.retries):
            if not isinstance(exc, Exception):
                break  # KeyboardInterrupt and friends are never retried
            counters.retries += 1
            try:
                return attempt(item)
            except BaseException as again:  # noqa: BLE001 - the policy decides
                exc = again
        stage.failed(exc, seq, counters)
        return _SKIPPED

    def run() -> None:
        batch = 1  # grows while calls are cheap; a slow stage keeps one item per hand-off
        while True:
            t0 = perf_counter()
            try:
                seq0, items = inbox.get(batch)
            except EndOfStream:
                return
            t1 = perf_counter()
            counters.starved += t1 - t0
            counters.items_in += len(items)
            out: list[Any] = []
            done = seq0  # inputs [seq0, done) are already put
            blocked = 0.0
            try:
                if not generator:
                    _call_all(items, seq0, out)
                for i, item in enumerate(items if generator else ()):
                    seq = seq0 + i
                    if not stream:
                        result = call(item, seq)
                        if result is not None:
                            out.extend(result)
                        continue
                    mark = len(out)
                    try:
                        produced = iter(fn(item))
                        while True:
                            room = outbox.capacity - len(out)
                            if room <= 0:
                                # A generator yielding more than fits: hand over what
                                # is ready so memory stays bounded.
                                tb = perf_counter()
                                if seq > done:
                                    outbox.put(done, seq, out[:mark])
                                outbox.put(seq, seq, out[mark:], final=False)
                                counters.items_out += len(out)
                                out, mark, done = [], 0, seq
                                blocked += perf_counter() - tb
                                continue
                            before = len(out)
                            out.extend(islice(produced, room))
                            if len(out) - before < room:
                                break
                    except Stopped:
                        raise  # the pipeline is stopping: not a failure of this input
                    except BaseException as exc:  # noqa: BLE001 - the policy decides
                        # A skipped input contributes nothing, except what was
                        # already handed downstream because it did not fit.
                        del out[mark:]
                        stage.failed(exc, seq, counters)
            except StageFailed as failure:
                # Outputs of the inputs before the failure still go downstream.
                outbox.put(done, failure.seq, out)
                counters.items_out += len(out)
                return
            t2 = perf_counter()
            counters.busy += t2 - t1 - blocked
            outbox.put(done, seq0 + len(items), out)
            counters.items_out += len(out)
            counters.blocked += perf_counter() - t2 + blocked
            per_item = (t2 - t1 - blocked) / len(items)
            fit = int(BATCH_TARGET_S / per_item) if per_item > 0 else max_batch
            batch = max(1, min(max_batch, 2 * batch, fit))

    return guarded(stage, run)


def _aggregate_worker(stage: StageRuntime) -> Callable[[], None]:
    cfg, inbox, outbox = stage.config, stage.inbox, stage.outbox
    counters = stage.new_counters()
    size = cfg.size

    def run() -> None:
        group: list[Any] = []
        seq_end = 0
        while True:
            t0 = perf_counter()
            try:
                seq0, items = inbox.get(max(1, inbox.capacity // 2))
            except EndOfStream:
                break
            counters.starved += perf_counter() - t0
            counters.items_in += len(items)
            out = []
            for item in items:
                group.append(item)
                if len(group) == size:
                    out.append(group)
                    group = []
            seq_end = seq0 + len(items)
            t1 = perf_counter()
            outbox.put(seq0, seq_end, out)
            counters.items_out += len(out)
            counters.blocked += perf_counter() - t1
        if group and not cfg.drop_last:
            outbox.put(seq_end, seq_end, [group])
            counters.items_out += 1

    return guarded(stage, run)
