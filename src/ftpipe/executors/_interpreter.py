"""``InterpreterExecutor``: each worker thread owns one isolated subinterpreter.

An isolated subinterpreter has its own GIL, so pure-Python calls run in
parallel even on GIL builds.  Each subinterpreter runs one long-lived thread of
its own that serves calls from a pipe, so a call costs two pipe writes and two
wake-ups, not a thread state created and destroyed per call.  Calls cross by
pickle: the function travels by module and qualified name, arguments and
results as pickles::

    worker thread (main interpreter)          serving thread (its subinterpreter, own GIL)
    pickle((fn, args, kwargs)) --pipe: frame--> import fn by name, call it
    result / exception  <------pipe: frame---- pickle((ok, value, traceback text))

A frame is an 8-byte length and a pickle; an empty frame asks the serving
thread to stop.  The engine's chunks (``call_chunk``: many inputs per call) of
plain functions run in a loop written in the bootstrap itself, so a
subinterpreter imports only what the user's function needs, never ftpipe.

Version gate (the one branch): CPython 3.14+ ``concurrent.interpreters``
(written against its documented API, untested here: no 3.14 on the CI
machines); 3.13 (also 3.13t) the private ``_interpreters`` module, whose API is
frozen for that release; anything older raises ``RuntimeError`` naming the
alternatives.  Subinterpreters do not inherit ``sys.path`` entries added at
run time, so each one gets the parent's ``sys.path`` when it starts.
"""

from __future__ import annotations

import functools
import os
import pickle
import sys
from collections.abc import Callable
from typing import Any

from .._engine._calls import call_chunk, unpack_failures
from ._pool import BrokenWorkerError, WorkerContext, WorkerPool
from ._remote import unpack_exception

__all__ = ["InterpreterExecutor", "subinterpreters_available", "unavailable_reason"]

# Runs once in each new subinterpreter's __main__ (with _ftpipe_path and
# _ftpipe_fds set) and starts its serving thread.  Kept free of ftpipe imports.
_BOOTSTRAP = """
import os, pickle, sys, threading, time, traceback
sys.path[:] = pickle.loads(_ftpipe_path)
del _ftpipe_path

def _ftpipe_pack(exc):
    text = "[in subinterpreter]\\n" + "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc, 5))
    except Exception:
        exc = RuntimeError(f"{type(exc).__qualname__}: {exc} (the original exception could not be pickled)")
    return (exc, text)

def _ftpipe_chunk(fn, items, kind):
    # The engine's call_chunk for plain and star calls, failures packed.
    t0 = time.perf_counter()
    results, failures = [], {}
    star = kind == "star"
    for i, item in enumerate(items):
        try:
            results.append(fn(*item) if star else fn(item))
        except BaseException as exc:
            failures[i] = _ftpipe_pack(exc)
            results.append(None)
    return (results, failures, time.perf_counter() - t0)

def _ftpipe_portable(out):
    # The whole outcome did not pickle: fail only the inputs whose results do not.
    results, failures, seconds = out[1]
    results = list(results)
    for i, result in enumerate(results):
        if i not in failures:
            try:
                pickle.dumps(result, 5)
            except Exception as exc:
                failures[i] = _ftpipe_pack(TypeError(
                    f"the result ({type(result).__name__}) cannot be pickled back to the main interpreter: {exc}"
                ))
                results[i] = None
    return (True, (results, failures, seconds), "")

def _ftpipe_serve(rfd, wfd):
    def receive():
        buf, need = bytearray(), 8
        while len(buf) < need:
            more = os.read(rfd, max(need - len(buf), 65536))
            if not more:
                return None
            buf += more
            if need == 8 and len(buf) >= 8:
                need = 8 + int.from_bytes(buf[:8], "little")
        return memoryview(buf)[8:need] if need > 8 else None

    def send(data):
        view = memoryview(len(data).to_bytes(8, "little") + data)
        while view:
            view = view[os.write(wfd, view):]

    try:
        while True:
            task = receive()
            if task is None:
                break
            chunk = False
            try:
                chunk, fn, args, kwargs = pickle.loads(task)
                task = None
                if chunk:
                    out = (True, _ftpipe_chunk(*args), "")
                else:
                    out = (True, fn(*args, **kwargs), "")
            except BaseException as exc:
                out = (False, *_ftpipe_pack(exc))
            fn = args = kwargs = None
            try:
                data = pickle.dumps(out, 5)
            except BaseException as exc:
                if chunk and out[0]:
                    data = pickle.dumps(_ftpipe_portable(out), 5)
                else:
                    data = pickle.dumps((False, *_ftpipe_pack(TypeError(
                        f"the result ({type(out[1]).__name__}) cannot be pickled back to the main interpreter: {exc}"
                    ))), 5)
            out = None
            send(data)
            data = None
    finally:
        os.close(wfd)  # the main interpreter reads EOF: this worker is gone
        os.close(rfd)

threading.Thread(target=_ftpipe_serve, args=pickle.loads(_ftpipe_fds), name="ftpipe-serve").start()
del _ftpipe_fds
"""

# call_chunk kinds the bootstrap runs itself; others import ftpipe in the worker.
_INLINE_KINDS = ("function", "star")


def _backend() -> Callable[[], Any] | None:
    """Return what creates a subinterpreter handle on this Python, or None."""
    try:
        import concurrent.interpreters as public  # type: ignore[import-not-found,unused-ignore]  # 3.14+

        return functools.partial(_Public314, public)
    except ImportError:
        pass
    if sys.version_info[:2] == (3, 13):
        try:
            import _interpreters
        except ImportError:
            return None
        return functools.partial(_Private313, _interpreters)
    return None


def subinterpreters_available() -> bool:
    """Return True when this interpreter can run ``InterpreterExecutor``."""
    return _backend() is not None


def unavailable_reason() -> str:
    """Explain why subinterpreters are unavailable and what to use instead."""
    version = ".".join(map(str, sys.version_info[:3]))
    return (
        f"isolated subinterpreters need CPython 3.13+ (3.14's concurrent.interpreters or "
        f"3.13's _interpreters); this is {sys.implementation.name} {version}. Use "
        "executor='process' (ProcessExecutor) for parallel pure-Python work here, or "
        "executor='thread' on a free-threaded 3.13t build"
    )


class _Private313:
    """CPython 3.13's ``_interpreters`` (also on 3.13t)."""

    def __init__(self, module: Any) -> None:
        self._interp = module
        self._id = module.create("isolated")

    def exec(self, code: str, **names: Any) -> None:
        err = self._interp.exec(self._id, code, shared=names)
        if err is not None:  # only our own bootstrap runs here; user errors are packed
            raise RuntimeError(
                f"subinterpreter bootstrap failed: {err.formatted}\n{err.errdisplay}"
            )

    def close(self) -> None:
        # Waits for the serving thread (a non-daemon thread of the subinterpreter).
        self._interp.destroy(self._id)


class _Public314:  # pragma: no cover - no 3.14 on the CI machines yet
    """CPython 3.14+ ``concurrent.interpreters``."""

    def __init__(self, module: Any) -> None:
        self._interp = module.create()

    def exec(self, code: str, **names: Any) -> None:
        if names:
            self._interp.prepare_main(names)
        self._interp.exec(code)

    def close(self) -> None:
        self._interp.close()


def _send(fd: int, data: bytes) -> None:
    view = memoryview(len(data).to_bytes(8, "little") + data)
    while view:
        view = view[os.write(fd, view) :]


def _receive(fd: int) -> memoryview | None:
    """Read one frame; None at end of file (the serving thread is gone)."""
    buf, need = bytearray(), 8
    while len(buf) < need:
        more = os.read(fd, max(need - len(buf), 65536))
        if not more:
            return None
        buf += more
        if need == 8 and len(buf) >= 8:
            need = 8 + int.from_bytes(buf[:8], "little")
    return memoryview(buf)[8:need]


class InterpreterContext:
    """A worker context that runs each call in the worker thread's own subinterpreter."""

    def __init__(
        self, name: str, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]
    ) -> None:
        self._name = name
        self._initializer = initializer
        self._initargs = initargs
        self._handle: Any = None
        self._to_worker = -1  # our ends of the two pipes
        self._from_worker = -1
        # Plain flags, written by the worker thread (_busy) or interrupt() (_interrupted):
        # a stale read costs at most one call that runs on in the background.
        self._busy = False
        self._interrupted = False

    def initialize(self) -> None:
        create = _backend()
        assert create is not None, "checked by InterpreterExecutor"
        self._handle = create()
        task_r, self._to_worker = os.pipe()
        self._from_worker, result_w = os.pipe()
        try:
            self._handle.exec(
                _BOOTSTRAP,
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
        chunk = fn is call_chunk and args[2] in _INLINE_KINDS
        target = args[0] if chunk else fn
        while isinstance(target, functools.partial):
            target = target.func
        if getattr(target, "__module__", None) == "__main__":
            raise TypeError(
                f"interpreter executor {self._name!r}: {target!r} is defined in __main__; a "
                "subinterpreter imports functions by module and qualified name, so move it "
                "into an importable module"
            )
        try:
            task = pickle.dumps((chunk, fn, args, kwargs), protocol=5)
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
            _send(self._to_worker, task)
            del task
            reply = _receive(self._from_worker)
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
                _send(self._to_worker, b"")  # please stop
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
    ``executor="process"``.

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
    ) -> None:
        if not subinterpreters_available():
            raise RuntimeError(f"InterpreterExecutor: {unavailable_reason()}")
        super().__init__(max_workers, initializer=initializer, initargs=initargs, name=name)

    def _make_context(self) -> WorkerContext:
        return InterpreterContext(self._name, self._initializer, self._initargs)
