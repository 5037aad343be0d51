"""Register ``"process"`` and ``"interpreter"`` with the engine's executor seam."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from .._engine import ExecutorKind, register_executor_kind
from ._callables import check_importable, check_picklable
from ._interpreter import InterpreterExecutor
from ._pool import WorkerPool
from ._process import ProcessExecutor
from ._subinterpreters import subinterpreters_available, unavailable_reason

__all__ = ["own_kind", "register_kinds"]


def _stop(executor: Executor) -> None:
    # Process workers inside a call are killed; subinterpreters finish theirs in the background.
    assert isinstance(executor, WorkerPool)
    executor._terminate()


def _create_process(max_workers: int, stage: str) -> Executor:
    return ProcessExecutor(max_workers, name=stage)


def _check_process(fn: Callable[..., Any], stage: str) -> None:
    check_picklable(fn, stage, target="a worker process")


def _create_interpreter(max_workers: int, stage: str) -> Executor:
    return InterpreterExecutor(max_workers, name=stage)


def _check_interpreter(fn: Callable[..., Any], stage: str) -> None:
    if not subinterpreters_available():
        raise ValueError(
            f"stage {stage!r}: executor='interpreter' is unavailable: {unavailable_reason()}"
        )
    check_importable(fn, stage)


# Written once at import time, read-only afterwards.
_OWN = {
    "process": ExecutorKind("process", _create_process, _check_process, _stop),
    "interpreter": ExecutorKind("interpreter", _create_interpreter, _check_interpreter, _stop),
}


def own_kind(name: str) -> ExecutorKind | None:
    """The kind registered here under ``name`` (how to create and stop its pools), or None.

    The engine exports no look-up by name, so persistent pools (``_persistent``)
    can keep the pools of these kinds; a kind registered elsewhere runs as the
    engine runs it, with new workers per pipeline.
    """
    return _OWN.get(name)


def register_kinds() -> None:
    """Make ``pipe(..., executor="process" | "interpreter")`` work."""
    for kind in _OWN.values():
        register_executor_kind(kind)
