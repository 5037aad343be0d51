"""Resizing a running stage: more or fewer workers, nothing lost, duplicated or reordered.

::

    Pipeline.resize(name, n) ──► Run.resize_locked (one resize at a time) ──► resize_stage
      thread stage      n threads:     grow: add_worker (a producer first, then the thread)
                                       shrink: surplus threads retire between batches
      owned pool        pool.resize(n), and 2n submitting threads, as above
      async stage       n calls in flight on its one loop (the loop reads the size)
      aggregate, a user's executor instance: refused (see not_resizable)

Why nothing is lost or reordered: a worker takes a batch, finishes it and puts its
outputs before it may retire, and the output channel restores input order by
sequence number whichever worker put a range.  A retiring worker ends through
the normal path (``guarded`` calls ``producer_done``), so the stream ends when
the last worker of the stage does, however many came and went.

Moving a stage to another executor (``executor="auto"``) is the same move: a new
generation of workers (on the new executor) starts on the same input and output
channels, every thread of the old one finishes the batch in hand and retires,
and the old executor is shut down once its last thread left.  The new pool's
workers are started (and run one call each) before the old generation retires,
and the move itself counts as a producer of the output until the new generation's
threads have counted in: the old generation's last thread never ends the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, wait
from dataclasses import replace
from typing import Any

from .._priority import NORMAL, Scheduling
from ._config import FnKind, StageKind
from ._executor_kinds import ExecutorKind
from ._executor_stage import executor_worker
from ._plan import add_worker, worker_plan
from ._setup import create_executor
from ._stage import StageRuntime
from ._tuning import WARM_UP_S

__all__ = ["grow_threads", "not_resizable", "resize_stage", "switch_executor"]


def not_resizable(stage: StageRuntime) -> str | None:
    """Why the stage's concurrency cannot change while it runs, or None."""
    cfg = stage.config
    if cfg.kind is StageKind.AGGREGATE:
        return "an aggregate stage runs one thread by design"
    if stage.executor is None:
        return None
    if not stage.owns_executor:
        return (
            f"it runs on a {type(stage.executor).__name__} instance you supplied, whose size "
            "the pipeline does not own; resize that executor yourself, or pass a kind name "
            "(executor='process') so the pipeline creates and sizes the pool"
        )
    if not callable(getattr(stage.executor, "resize", None)):
        return f"its executor kind {stage.executor_name!r} has no resize(n)"
    return None


def resize_stage(stage: StageRuntime, n: int) -> None:
    """Give a running stage ``n`` workers (the caller validated ``n`` and serializes resizes).

    Raises:
        ValueError: The stage cannot be resized (the message says why).
    """
    reason = not_resizable(stage)
    if reason is not None:
        raise ValueError(f"stage {stage.config.name!r} cannot be resized: {reason}")
    is_async = stage.config.fn_kind in (FnKind.ASYNC, FnKind.ASYNC_GENERATOR)
    executor: Any = stage.executor
    growing = n > stage.workforce.size
    if executor is not None and growing:
        executor.resize(n)  # workers first, then the threads that feed them
    missing = stage.workforce.wanted(n)
    if not is_async or executor is not None:
        grow_threads(stage, missing, stage.make)
    if executor is not None and not growing:
        executor.resize(n)  # idle workers retire after their current call


def grow_threads(
    stage: StageRuntime, count: int, make: Callable[[StageRuntime], Callable[[], None]] | None
) -> None:
    """Start ``count`` more workers of the stage's current generation (none once it ended)."""
    assert make is not None, "set by the run for every stage"
    for _ in range(count):
        if not add_worker(stage, make):
            return


def started(executor: Executor, n: int) -> None:
    """Start ``n`` workers of a new pool and wait until each ran a call (or failed).

    The old generation keeps working meanwhile, so the stage does not stall while
    processes start and import.  A failure is not raised here: the new generation's
    first call raises it in the stage, named, as any worker failure.
    """
    calls = [executor.submit(int) for _ in range(n)]  # each submit starts a worker
    wait(calls, timeout=WARM_UP_S)  # a stop shuts the pool down: the calls end


def switch_executor(
    stage: StageRuntime,
    kind: ExecutorKind | None,
    n: int,
    own: Callable[[Executor, ExecutorKind], None],
    scheduling: Scheduling = NORMAL,
) -> None:
    """Move a running stage to ``n`` workers of ``kind`` (None: the engine's threads).

    The caller serializes this with resizes and checked that the function can run
    there.  ``own`` hands an executor created here to the run, which shuts it
    down when it stops.
    """
    # The move counts as one more producer of the output while it runs: the old
    # generation may retire (each thread counting itself out) before the first thread
    # of the new one counts in, and the stream must not end in between.
    if not stage.outbox.add_producer():
        return  # the stage's output ended, or the pipeline is stopping: nothing to move
    try:
        _move(stage, kind, n, own, scheduling)
    finally:
        stage.outbox.producer_done()


def _move(
    stage: StageRuntime,
    kind: ExecutorKind | None,
    n: int,
    own: Callable[[Executor, ExecutorKind], None],
    scheduling: Scheduling,
) -> None:
    old = stage.executor
    if kind is None:
        executor: Executor | None = None
        make = worker_plan(replace(stage.config, executor=None)).make
        per_worker, name = 1, "thread"
    else:
        # The pool's workers lower themselves (Run.start started the forkserver from
        # the consumer's thread, never from this lowered one) and run the initializer.
        executor = create_executor(kind, replace(stage.config, concurrency=n), scheduling)
        own(executor, kind)
        started(executor, n)
        make, per_worker, name = executor_worker, 2, kind.name
    stage.executor, stage.owns_executor, stage.make = executor, executor is not None, make
    stage.executor_name = name

    def drained() -> None:
        # The old generation's last thread left: no call of it runs or waits there.
        if old is not None:
            old.shutdown(wait=False)

    stage.workforce.new_generation(n, per_worker, drained)
    grow_threads(stage, n * per_worker, make)
