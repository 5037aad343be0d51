"""The engine's one seam for executors: a registry of executor kinds by name.

::

    import ftpipe.executors ── register_executor_kind(ExecutorKind("process", ...))
    pipe(fn, executor="process") ── kind.check(fn, stage)      (build time)
    pipeline starts ── kind.create(concurrency, stage[, scheduling]) ──► Executor
    pipeline stops ─── kind.stop(executor), or shutdown(cancel_futures=True)

The engine runs ``executor=None`` / ``"thread"`` stages on its own worker
threads.  Every other string names a kind registered here by an upper layer
(``ftpipe.executors`` registers ``"process"`` and ``"interpreter"`` when it is
imported), so the engine never imports the layers built on top of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

__all__ = ["ExecutorKind", "executor_kind", "executor_kind_names", "register_executor_kind"]


@dataclass(frozen=True)
class ExecutorKind:
    """How to make and vet an executor for a stage.

    Attributes:
        name: The string users pass as ``pipe(..., executor=name)``.
        create: ``create(max_workers, stage_name) -> Executor``; called when the
            pipeline starts.  The pipeline shuts the executor down when it stops.
            With ``scheduled``, a pipeline built with a priority or CPU set calls
            ``create(max_workers, stage_name, scheduling)`` (an
            ``ftpipe._priority.Scheduling``) so the executor's own workers follow it.
        check: ``check(fn, stage_name)``; called by ``PipelineBuilder.pipe`` so a
            function that cannot run on this kind (a lambda on a subinterpreter,
            an unpicklable callable on a process) fails at build time.  Raises
            ``TypeError`` or ``ValueError`` naming the stage.
        stop: ``stop(executor)``; how a stopping pipeline releases an executor
            it created: cancel queued calls and abandon running ones, returning
            within about a second whatever a call's length (a closing pipeline
            wants none of their results).  None: ``shutdown(wait=True,
            cancel_futures=True)``, which waits for running calls.
        scheduled: ``create`` takes the pipeline's scheduling as a third argument.
            Without it, only the pipeline's threads that submit calls are lowered:
            processes the executor starts elsewhere run as their parent does.
        create_with_initializer: ``create_with_initializer(max_workers,
            stage_name, initializer, scheduling)``: as ``create`` (with the
            pipeline's scheduling always, ``scheduled`` or not), with a picklable
            ``initializer`` every worker runs once before its first call (it
            tells the worker its index: see ``ftpipe.worker_info()``).  A pool
            built on ``ftpipe.WorkerPool`` passes it as ``initializer=``.  None:
            the kind takes no ``initializer=`` (``pipe`` refuses one).
    """

    name: str
    create: Callable[..., Executor]
    check: Callable[[Callable[..., Any], str], None]
    stop: Callable[[Executor], None] | None = None
    scheduled: bool = False
    create_with_initializer: Callable[[int, str, Callable[[], None], Any], Executor] | None = None


# Written once per kind at import time of the registering module, read on every
# pipe(); the lock makes registration from several threads safe.
_kinds: dict[str, ExecutorKind] = {}
_lock = threading.Lock()


def register_executor_kind(kind: ExecutorKind) -> None:
    """Make ``kind.name`` usable as ``pipe(..., executor=kind.name)``."""
    if kind.name == "thread":
        raise ValueError("'thread' is built into the engine and cannot be replaced")
    with _lock:
        _kinds[kind.name] = kind


def executor_kind(name: str) -> ExecutorKind | None:
    """Return the registered kind called ``name``, or None."""
    with _lock:
        return _kinds.get(name)


def executor_kind_names() -> tuple[str, ...]:
    """Return every executor name ``pipe`` accepts, ``"thread"`` first."""
    with _lock:
        return ("thread", *sorted(_kinds))
