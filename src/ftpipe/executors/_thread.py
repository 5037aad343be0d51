"""``ThreadExecutor``: the worker context that runs each call on the worker thread itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._runtime import usable_cores
from ._context import WorkerContext
from ._pool import WorkerPool

__all__ = ["ThreadContext", "ThreadExecutor"]


class ThreadContext:
    """Run calls on the worker thread itself."""

    def __init__(self, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
        self._initializer = initializer
        self._initargs = initargs

    def initialize(self) -> None:
        if self._initializer is not None:
            self._initializer(*self._initargs)

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return fn(*args, **kwargs)

    def interrupt(self) -> bool:
        return False  # a thread cannot be interrupted; an idle one stops by itself

    def finalize(self) -> None:
        pass


class ThreadExecutor(WorkerPool):
    """Run calls in threads of this process (parallel for pure Python on 3.13t only).

    The same constructor as ``InterpreterExecutor`` and ``ProcessExecutor``, so a
    stage can switch executors by changing one name.
    """

    _kind = "thread"

    @staticmethod
    def _default_workers() -> int:
        return min(32, usable_cores() + 4)  # as ThreadPoolExecutor: I/O-bound work waits

    def _make_context(self) -> WorkerContext:
        return ThreadContext(*self._initializer_for(len(self._contexts)))
