"""Register ``"process"`` and ``"interpreter"`` with the engine's executor seam."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from .._engine import ExecutorKind, register_executor_kind
from .._priority import NORMAL, Scheduling
from ._callables import check_importable, check_picklable
from ._interpreter import InterpreterExecutor
from ._pool import WorkerPool
from ._process import ProcessExecutor
from ._subinterpreters import subinterpreters_available, unavailable_reason

__all__ = ["register_kinds"]


def _stop(executor: Executor) -> None:
    # Process workers inside a call are killed; subinterpreters finish theirs in the background.
    assert isinstance(executor, WorkerPool)
    executor._terminate()


def _create_process(max_workers: int, stage: str, scheduling: Scheduling = NORMAL) -> Executor:
    return ProcessExecutor(
        max_workers, name=stage, priority=scheduling.priority, cpus=scheduling.cpus
    )


def _create_process_with(
    max_workers: int, stage: str, init: Callable[[], None], scheduling: Scheduling = NORMAL
) -> Executor:
    return ProcessExecutor(
        max_workers,
        name=stage,
        initializer=init,
        priority=scheduling.priority,
        cpus=scheduling.cpus,
    )


def _check_process(fn: Callable[..., Any], stage: str) -> None:
    check_picklable(fn, stage, target="a worker process")


def _create_interpreter(max_workers: int, stage: str, scheduling: Scheduling = NORMAL) -> Executor:
    return InterpreterExecutor(
        max_workers, name=stage, priority=scheduling.priority, cpus=scheduling.cpus
    )


def _create_interpreter_with(
    max_workers: int, stage: str, init: Callable[[], None], scheduling: Scheduling = NORMAL
) -> Executor:
    return InterpreterExecutor(
        max_workers,
        name=stage,
        initializer=init,
        priority=scheduling.priority,
        cpus=scheduling.cpus,
    )


def _check_interpreter(fn: Callable[..., Any], stage: str) -> None:
    if not subinterpreters_available():
        raise ValueError(
            f"stage {stage!r}: executor='interpreter' is unavailable: {unavailable_reason()}"
        )
    check_importable(fn, stage)


def register_kinds() -> None:
    """Make ``pipe(..., executor="process" | "interpreter")`` work."""
    register_executor_kind(
        ExecutorKind("process", _create_process, _check_process, _stop, True, _create_process_with)
    )
    register_executor_kind(
        ExecutorKind(
            "interpreter",
            _create_interpreter,
            _check_interpreter,
            _stop,
            True,
            _create_interpreter_with,
        )
    )
