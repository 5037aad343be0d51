"""From a stage's config to its workers: which body each thread runs, and how many run.

::

    StageConfig ──worker_plan──► WorkerPlan(make, count)
      aggregate                    aggregate_worker     1
      async fn, no executor        async_worker         1 (an event loop with N calls in flight)
      on an executor               executor_worker      N, or 2N when the executor's workers bound it
      generator, retries=0         streamed_worker      N   (disaggregate too: flatten is one)
      generator, retries>0         collected_worker     N
      plain function               batched_worker       N

    start_stage(stage): count threads, each running make(stage)
    add_worker(stage, make): one more thread (a resize), counted as a producer first

The count is also the number of producers of the stage's output channel, which
the pipeline sizes before any thread starts: both read the same plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._async_stage import async_worker
from ._channel import Stopped
from ._config import FnKind, StageConfig, StageKind
from ._executor_stage import executor_worker
from ._stage import StageRuntime
from ._thread_stage import aggregate_worker, batched_worker, collected_worker, streamed_worker

__all__ = ["WorkerPlan", "add_worker", "start_stage", "worker_plan"]


@dataclass(frozen=True)
class WorkerPlan:
    """How a stage runs.

    Attributes:
        make: Returns the body of one worker thread for a stage.
        count: Worker threads; each is one producer of the stage's output channel.
        numbered: Name the threads ``ftpipe-<stage>-<i>``; a stage that runs one
            thread by design (aggregate, async) names it ``ftpipe-<stage>``.
    """

    make: Callable[[StageRuntime], Callable[[], None]]
    count: int
    numbered: bool = True
    per_worker: int = 1  # threads per unit of concurrency; 0: a fixed count (no resize)


def worker_plan(cfg: StageConfig) -> WorkerPlan:
    """Return the worker body and thread count of the stage ``cfg`` describes."""
    if cfg.kind is StageKind.AGGREGATE:
        return WorkerPlan(aggregate_worker, 1, numbered=False, per_worker=0)
    is_async = cfg.fn_kind in (FnKind.ASYNC, FnKind.ASYNC_GENERATOR)
    if cfg.executor is None:
        if is_async:
            return WorkerPlan(async_worker, 1, numbered=False, per_worker=0)
        if cfg.fn_kind is FnKind.GENERATOR:
            # A retried generator must not leave a failed attempt's outputs
            # downstream, so it is collected; otherwise its outputs stream.
            return WorkerPlan(collected_worker if cfg.retries else streamed_worker, cfg.concurrency)
        return WorkerPlan(batched_worker, cfg.concurrency)
    threads = _submitting_threads(cfg)
    return WorkerPlan(executor_worker, threads, per_worker=threads // cfg.concurrency)


def _submitting_threads(cfg: StageConfig) -> int:
    """Threads feeding an executor stage.

    Two per worker when the executor's own workers bound how many calls run at
    once: a pool the pipeline creates from a kind name (``"process"``), or an
    executor instance that says it has at most ``concurrency`` workers
    (``max_workers``, as ftpipe's executors do).  The next chunk then waits in
    the executor's queue while one runs, so a worker never idles during a round
    trip through the parent.  Any other executor (a Dask cluster, a larger
    shared pool) gets exactly ``concurrency`` calls at once.
    """
    if isinstance(cfg.executor, str):
        return 2 * cfg.concurrency
    workers = getattr(cfg.executor, "max_workers", None)
    if isinstance(workers, int) and not isinstance(workers, bool) and workers <= cfg.concurrency:
        return 2 * cfg.concurrency
    return cfg.concurrency


def start_stage(stage: StageRuntime) -> None:
    """Start the workers of one stage, as ``worker_plan`` says.

    Raises:
        Stopped: The pipeline is stopping (the threads started so far end on their own).
    """
    cfg = stage.config
    plan = worker_plan(cfg)
    for i in range(plan.count):
        name = f"ftpipe-{cfg.name}-{i}" if plan.numbered else f"ftpipe-{cfg.name}"
        stage.control.thread(plan.make(stage), name)


def add_worker(stage: StageRuntime, make: Callable[[StageRuntime], Callable[[], None]]) -> bool:
    """Start one more worker of the stage's current generation; False once it finished.

    The output channel counts the new producer before the thread starts, so the
    stream cannot end under it; a stage whose output already ended (or a
    pipeline stopping) gets no new thread.
    """
    if not stage.outbox.add_producer():
        return False
    workforce = stage.workforce
    generation = workforce.generation
    suffix = workforce.join(generation)
    try:
        stage.control.thread(make(stage), f"ftpipe-{stage.config.name}-{suffix}")
    except BaseException as exc:
        workforce.gone(generation)
        stage.outbox.producer_done()
        if isinstance(exc, Stopped):
            return False  # the pipeline is stopping
        raise
    return True
