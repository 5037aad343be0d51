"""The seam every ftpipe executor plugs into: a worker context, and how one breaks.

A ``WorkerPool`` owns worker threads; each owns one ``WorkerContext``, which
decides where the thread's calls really run (the thread itself, its
subinterpreter, its child process).  An executor kind is one context class, not
another pool, as CPython 3.14's interpreter pool is its thread pool with another
context.  A context that finds its worker dead raises ``BrokenWorkerError``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import BrokenExecutor
from typing import Any, Protocol

__all__ = ["BrokenWorkerError", "WorkerContext"]


class BrokenWorkerError(BrokenExecutor):
    """A worker of an ftpipe executor died or could not start.

    Attributes:
        name: The executor's name (a pipeline stage name when the engine made it).
        exitcode: The worker process's exit code (negative: killed by a signal),
            or None when the worker was not a process.
    """

    def __init__(self, message: str, *, name: str = "", exitcode: int | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[Any, ...]:
        # The keyword-only attributes do not survive BaseException's default reduce.
        return (_rebuild_broken, (str(self), self.name, self.exitcode))


def _rebuild_broken(message: str, name: str, exitcode: int | None) -> BrokenWorkerError:
    return BrokenWorkerError(message, name=name, exitcode=exitcode)


class WorkerContext(Protocol):
    """Where one worker thread runs its calls."""

    def initialize(self) -> None:
        """Prepare the worker (start a process, create an interpreter, run the initializer)."""

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Return ``fn(*args, **kwargs)`` or raise its exception (or ``BrokenWorkerError``)."""

    def interrupt(self) -> bool:
        """Abandon the running call where that is possible; called from any thread.

        Returns True when the worker will stop promptly once told to (it was
        idle, or its call was cut short), False when it may still be inside a
        call that cannot be interrupted.
        """

    def finalize(self) -> None:
        """Release the worker; called once, also after a failed ``initialize``."""
