"""``InterpreterExecutor``: each worker thread owns one isolated subinterpreter.

An isolated subinterpreter has its own GIL, so pure-Python calls run in
parallel even on GIL builds.  The worker context starts one per worker thread
and sends it calls over a pipe (``_interpreter_bootstrap`` draws that flow);
which API creates it is decided once, in ``_subinterpreters``.  Calls cross by
pickle: the function travels by module and qualified name, arguments and
results as pickles, so a function must be importable there.  Subinterpreters
do not inherit ``sys.path`` entries added at run time, so each one gets the
parent's ``sys.path`` when it starts.
"""

from __future__ import annotations

import functools
import os
import pickle
import sys
from collections.abc import Callable, Iterable
from typing import Any

from .._engine._calls import call_chunk, unpack_failures
from ._context import BrokenWorkerError, WorkerContext
from ._interpreter_bootstrap import BOOTSTRAP, INLINE_KINDS, receive_frame, send_frame
from ._pool import WorkerPool
from ._remote import packed_chunk, unpack_exception
from ._subinterpreters import Subinterpreter, backend, subinterpreters_available, unavailable_reason

__all__ = ["InterpreterContext", "InterpreterExecutor"]


class InterpreterContext:
    """A worker context that runs each call in the worker thread's own subinterpreter."""

    def __init__(
        self, name: str, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]
    ) -> None:
        self._name = name
        self._initializer = initializer
        self._initargs = initargs
        self._handle: Subinterpreter | None = None
        self._to_worker = -1  # our ends of the two pipes
        self._from_worker = -1
        # Plain flags, written by the worker thread (_busy) or interrupt() (_interrupted):
        # a stale read costs at most one call that runs on in the background.
        self._busy = False
        self._interrupted = False

    def initialize(self) -> None:
        create = backend()
        assert create is not None, "checked by InterpreterExecutor"
        self._handle = create()
        task_r, self._to_worker = os.pipe()
        self._from_worker, result_w = os.pipe()
        try:
            self._handle.exec(
                BOOTSTRAP,
                _ftpipe_path=pickle.dumps(list(sys.path)),
                _ftpipe_fds=pickle.dumps((task_r, result_w)),
            )
        except BaseException:
            os.close(task_r)  # the serving thread, which owns these, never started
            os.close(result_w)
            raise
        if self._initializer is not None:
            self.run(self._initializer, self._initargs, {})

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        chunk = fn is call_chunk and args[2] in INLINE_KINDS
        target = args[0] if chunk else fn
        while isinstance(target, functools.partial):
            target = target.func
        if getattr(target, "__module__", None) == "__main__":
            raise TypeError(
                f"interpreter executor {self._name!r}: {target!r} is defined in __main__; a "
                "subinterpreter imports functions by module and qualified name, so move it "
                "into an importable module"
            )
        # Chunks the bootstrap does not run inline still come back with packed failures.
        call = packed_chunk if fn is call_chunk and not chunk else fn
        try:
            task = pickle.dumps((chunk, call, args, kwargs), protocol=5)
        except Exception as exc:
            raise TypeError(
                f"interpreter executor {self._name!r}: cannot send {target!r} and its arguments "
                f"to a subinterpreter: {type(exc).__name__}: {exc}"
            ) from exc
        if self._interrupted:
            raise BrokenWorkerError(
                f"interpreter executor {self._name!r} was stopped before running {target!r}",
                name=self._name,
            )
        self._busy = True
        try:
            send_frame(self._to_worker, task)
            del task
            reply = receive_frame(self._from_worker)
        except OSError as exc:
            raise self._broken() from exc
        finally:
            self._busy = False
        if reply is None:
            raise self._broken()
        ok, value, tb = pickle.loads(reply)
        if ok:
            return unpack_failures(value, self._unpack) if fn is call_chunk else value
        raise self._unpack(value, tb)

    def _unpack(self, exc: BaseException, tb: str) -> BaseException:
        return unpack_exception(exc, tb, "interpreter", self._name)

    def _broken(self) -> BrokenWorkerError:
        return BrokenWorkerError(
            f"interpreter executor {self._name!r}: the subinterpreter's serving thread ended",
            name=self._name,
        )

    def interrupt(self) -> bool:
        # A subinterpreter cannot be interrupted from outside: one inside a call
        # finishes it, then its worker thread (told to stop) destroys it.
        self._interrupted = True
        return not self._busy

    def finalize(self) -> None:
        if self._to_worker >= 0:
            try:
                send_frame(self._to_worker, b"")  # please stop
            except OSError:
                pass
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        for fd in (self._to_worker, self._from_worker):
            if fd >= 0:
                os.close(fd)
        self._to_worker = self._from_worker = -1


class InterpreterExecutor(WorkerPool):
    """Run calls in isolated subinterpreters, one per worker thread (parallel on GIL builds).

    Functions must be importable by module and qualified name; arguments and
    results must pickle.  Extensions that refuse subinterpreters (numpy, torch)
    fail with an ``ImportError`` that names the module and suggests
    ``executor="process"``.  Takes ``WorkerPool``'s arguments, ``priority`` and
    ``cpus`` included.

    Raises:
        RuntimeError: This Python has no subinterpreter support (before 3.13).
    """

    _kind = "interpreter"

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        name: str | None = None,
        priority: str = "normal",
        cpus: Iterable[int] | None = None,
    ) -> None:
        if not subinterpreters_available():
            raise RuntimeError(f"InterpreterExecutor: {unavailable_reason()}")
        # A subinterpreter's serving thread is started by its worker thread, and
        # inherits the worker's lowered priority.
        super().__init__(
            max_workers,
            initializer=initializer,
            initargs=initargs,
            name=name,
            priority=priority,
            cpus=cpus,
        )

    def _make_context(self) -> WorkerContext:
        return InterpreterContext(self._name, *self._initializer_for(len(self._contexts)))
