"""What every stage shares: its live state, the retry and error policies, the worker guard.

::

    Run (_run.py; the Control: stop future, fail(), start threads)
      │
      ▼
    StageRuntime ── config, inbox, outbox, executor, every worker's counters
      │
      │  each worker: RetryPolicy(stage) ── its own WorkerCounters (no lock on the hot path)
      ▼
    an input fails ──► RetryPolicy.again? ──yes──► the worker runs it again   (retries += 1)
                             │ no: out of retries, or not an Exception
                             ▼
                       StageRuntime.failed ──► on_error="skip": dropped      (failures += 1)
                                          └──► otherwise: Control.fail, StageFailed
                                               (the outputs of earlier inputs still go out)

    guarded(stage, body): the thread body of every worker; Stopped and StageFailed end
    it quietly, anything else is an engine bug for the consumer; it always ends the
    worker's share of the output channel.

Counters mean the same on every stage kind: ``busy`` is worker-seconds inside the
user's function, measured where the calls ran (a thread stage times its batches
less the time it waited to hand outputs on, the async stage each call, an
executor stage reads the seconds its chunks reported from the worker).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor, Future
from typing import Any, Protocol

from ._channel import Channel, Stopped
from ._config import StageConfig
from ._stats import WorkerCounters
from ._workforce import Workforce

__all__ = [
    "BATCH_TARGET_S",
    "SKIPPED",
    "Control",
    "Outcome",
    "RetryPolicy",
    "StageFailed",
    "StageRuntime",
    "as_stage_error",
    "attempt",
    "guarded",
    "next_batch",
]

# A call slower than this is worth one lock hand-off per item; faster calls are batched.
BATCH_TARGET_S = 200e-6

# What RetryPolicy.settle returns for an input on_error="skip" dropped (None is a result).
SKIPPED: Any = object()

# One attempt at one input: (result, None), or (None, what it raised).
Outcome = tuple[Any, BaseException | None]


def next_batch(batch: int, per_item: float, most: int, target: float = BATCH_TARGET_S) -> int:
    """Size the next batch: it doubles while items are cheap, down to 1 once one takes ``target``.

    A slow stage then hands over one item at a time, so its other workers are not
    left idle, and a fast one pays a hand-off per batch instead of per item.
    """
    fit = int(target / per_item) if per_item > 0 else most
    return max(1, min(most, 2 * batch, fit))


def attempt(call: Callable[[Any], Any], item: Any) -> Outcome:
    """Call ``call(item)`` once and say how it went, never raising."""
    try:
        return call(item), None
    except BaseException as exc:  # noqa: BLE001 - the retry and error policies decide
        return None, exc


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


SOURCE_NOTE = "ftpipe: raised by the source"


def raised_in(stage: str, number: int) -> str:
    """The note on an error a stage function raised: the stage, and which input (from 0)."""
    return f"ftpipe: raised in stage {stage!r} on input #{number}"


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
        workforce: Workforce | None = None,
    ) -> None:
        self.config = config
        self.index = index
        self.inbox = inbox
        self.outbox = outbox
        self.control = control
        # Replaced whole (never mutated) by a resize or an executor switch, which
        # are serialized by the run; workers read it once, when they are made.
        self.executor = executor
        self.workforce = workforce or Workforce(config.concurrency, 1, 0)
        self.executor_name = config.executor_name  # replaced whole, like executor
        self.tuning = ""  # what the tuner chose and why (a str, replaced whole)
        self.owns_executor = isinstance(config.executor, str)  # created by the run
        # The body of one worker thread (_plan's make), set by the run.
        self.make: Callable[[StageRuntime], Callable[[], None]] | None = None
        self.counters: list[WorkerCounters] = []
        # Failures under on_error="skip" are rare; one lock keeps the total exact.
        self._failure_lock = threading.Lock()
        self._failures = 0

    def new_counters(self) -> WorkerCounters:
        counters = WorkerCounters()
        # list.append is atomic on every build (internally locked on 3.13t), and
        # stats() copies the list before reading it: a resize may add workers.
        self.counters.append(counters)
        return counters

    def failed(
        self, exc: BaseException, seq: int, counters: WorkerCounters, *, detail: str = ""
    ) -> None:
        """Apply the error policy to an input that failed after its retries.

        ``detail`` ends the note the consumer sees (e.g. which inputs a dead
        worker took with it).  Returns when the input is skipped.

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
                f"max_failures={cfg.max_failures}; this is the last one "
                f"(input #{seq + cfg.note_offset})"
            )
        else:
            note = raised_in(cfg.name, seq + cfg.note_offset) + detail
        self.control.fail(exc, note, stage=self.index, seq=seq)
        raise StageFailed(seq)


class RetryPolicy:
    """One worker's retry policy, and the counters its stage's statistics read.

    The same on every stage kind: an input that raised an ``Exception`` runs up to
    ``retries`` more times; KeyboardInterrupt, SystemExit and every other
    ``BaseException`` go straight to the error policy.  Each worker owns one, so
    counting takes no lock.
    """

    __slots__ = ("_stage", "counters", "retries")

    def __init__(self, stage: StageRuntime) -> None:
        self._stage = stage
        self.retries = stage.config.retries
        self.counters = stage.new_counters()

    def again(self, exc: BaseException, tries: int) -> bool:
        """Whether an input that failed with ``exc`` on its ``tries``-th attempt runs again.

        A yes is counted as a retry.
        """
        if tries > self.retries or not isinstance(exc, Exception):
            return False
        self.counters.retries += 1
        return True

    def settle(
        self, retry: Callable[[], Outcome], exc: BaseException, seq: int, *, detail: str = ""
    ) -> Any:
        """Finish input ``seq``, whose first attempt raised ``exc``: retry it, then apply the policy.

        Args:
            retry: Runs one more attempt at the input.
            exc: What the first attempt raised.
            seq: The input's sequence number.
            detail: Ends the note of a failure that stops the pipeline.

        Returns:
            The result of the attempt that succeeded, or ``SKIPPED``.

        Raises:
            StageFailed: The input failed for good and the pipeline stops.
        """
        tries = 1
        while self.again(exc, tries):
            tries += 1
            result, failure = retry()
            if failure is None:
                return result
            exc = failure
        self.fail(exc, seq, detail=detail)
        return SKIPPED

    def fail(self, exc: BaseException, seq: int, *, detail: str = "") -> None:
        """Apply the error policy to input ``seq`` (see ``StageRuntime.failed``)."""
        self._stage.failed(exc, seq, self.counters, detail=detail)


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
