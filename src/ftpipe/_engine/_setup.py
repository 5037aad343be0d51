"""Per-worker setup: ``initializer=`` checked at build time, run when a worker starts.

::

    pipe(fn, initializer=setup, initargs=...) ── check_initializer (build time)
        engine threads, async stages: any callable
        a kind name ("process", "interpreter"): the kind's check, and the kind
            must take an initializer (ExecutorKind.create_with_initializer)
        an executor instance: refused (give it the initializer yourself)

    thread / async stage worker thread ── start_worker(stage, index): worker_info set,
        initializer run in that thread; a failure stops the pipeline, naming the stage
    a pool the stage creates ── create_executor: StageStart(stage, ...) runs in each
        of its workers (thread, process, subinterpreter) before the first call
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from .._priority import NORMAL, Scheduling
from ._channel import Stopped
from ._context import StageStart, WorkerInfo, set_worker
from ._executor_kinds import ExecutorKind, executor_kind

if TYPE_CHECKING:
    from ._config import StageConfig
    from ._stage import StageRuntime

__all__ = ["check_initializer", "create_executor", "start_worker"]


def check_initializer(
    initializer: Callable[..., Any] | None,
    initargs: Any,
    executor: str | Executor | None,
    label: str,
) -> tuple[Any, ...]:
    """Validate ``pipe(initializer=, initargs=)`` for a stage; return ``initargs`` as a tuple.

    Raises:
        TypeError, ValueError: Naming the stage and the bad value.
    """
    if not isinstance(initargs, tuple | list):
        raise TypeError(
            f"stage {label!r}: initargs must be a tuple, got {type(initargs).__name__} {initargs!r:.80}"
        )
    if initializer is None:
        if initargs:
            raise ValueError(f"stage {label!r}: initargs given without an initializer")
        return ()
    if not callable(initializer):
        raise TypeError(
            f"stage {label!r}: initializer must be callable, got "
            f"{type(initializer).__name__} {initializer!r:.80}"
        )
    if inspect.iscoroutinefunction(initializer) or inspect.isasyncgenfunction(initializer):
        raise TypeError(
            f"stage {label!r}: initializer must be a plain function (it runs before the "
            f"worker's first call, outside any event loop), got {initializer!r:.80}"
        )
    if isinstance(executor, Executor):
        raise ValueError(
            f"stage {label!r}: initializer= cannot be used with an executor instance "
            f"({type(executor).__name__}): the stage does not own its workers; give the "
            "initializer to the executor itself (e.g. ThreadPoolExecutor(initializer=...))"
        )
    if isinstance(executor, str) and executor != "thread":
        kind = executor_kind(executor)
        assert kind is not None, "the executor name was checked first"
        if kind.create_with_initializer is None:
            raise ValueError(
                f"stage {label!r}: executor kind {executor!r} does not take an initializer"
            )
        kind.check(initializer, label)
    return tuple(initargs)


def create_executor(
    kind: ExecutorKind, cfg: StageConfig, scheduling: Scheduling = NORMAL
) -> Executor:
    """Create the pool of a stage's kind name; its workers know their stage and index,
    and run at the pipeline's priority."""
    if kind.create_with_initializer is None:
        if kind.scheduled and not scheduling.is_normal:
            return kind.create(cfg.concurrency, cfg.name, scheduling)
        return kind.create(cfg.concurrency, cfg.name)
    start = StageStart(cfg.name, cfg.concurrency, cfg.initializer, cfg.initargs)
    return kind.create_with_initializer(cfg.concurrency, cfg.name, start, scheduling)


def start_worker(stage: StageRuntime, index: int) -> None:
    """Set up the calling thread as worker ``index`` of a thread or async stage.

    Raises:
        Stopped: The initializer raised; the pipeline is stopping with its error.
    """
    cfg = stage.config
    set_worker(WorkerInfo(cfg.name, index, stage.workforce.size), cfg.seed_key)
    if cfg.initializer is None:
        return
    try:
        cfg.initializer(*cfg.initargs)
    except BaseException as exc:  # noqa: BLE001 - the pipeline fails with it, naming the stage
        stage.control.fail(exc, f"ftpipe: the initializer of stage {cfg.name!r} raised")
        raise Stopped from None
