"""``InterpreterExecutor``: each worker thread owns one isolated subinterpreter.

An isolated subinterpreter has its own GIL, so pure-Python calls run in
parallel even on GIL builds.  Calls cross by pickle: the function travels by
module and qualified name, arguments and results as pickles (bytes are
shareable between interpreters, so nothing else is needed)::

    worker thread                       its subinterpreter (own GIL)
    pickle((fn, args, kwargs)) --exec--> _ftpipe_call(): import fn by name, call it
    result / exception     <--queue---- pickle((ok, value, traceback text))

Version gate (the one branch): CPython 3.14+ ``concurrent.interpreters``; 3.13
(also 3.13t) the private ``_interpreters`` / ``_interpqueues`` modules, whose
API is frozen for that release; anything older raises ``RuntimeError`` naming
the alternatives.  Subinterpreters do not inherit ``sys.path`` entries added at
run time, so each one gets the parent's ``sys.path`` when it starts.
"""

from __future__ import annotations

import functools
import pickle
import sys
from collections.abc import Callable
from typing import Any

from ._pool import WorkerContext, WorkerPool
from ._remote import unpack_exception

__all__ = ["InterpreterExecutor", "subinterpreters_available", "unavailable_reason"]

# Runs in each new subinterpreter's __main__.  Kept free of ftpipe imports: the
# subinterpreter should import only what the user's function needs.
_BOOTSTRAP = """
import pickle, sys, traceback
sys.path[:] = pickle.loads(_ftpipe_path)
del _ftpipe_path

def _ftpipe_pack(exc):
    text = "[in subinterpreter]\\n" + "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc, 5))
    except Exception:
        exc = RuntimeError(f"{type(exc).__qualname__}: {exc} (the original exception could not be pickled)")
    return (False, exc, text)

def _ftpipe_call():
    global _ftpipe_task
    try:
        fn, args, kwargs = pickle.loads(_ftpipe_task)
        _ftpipe_task = None
        out = (True, fn(*args, **kwargs), "")
    except BaseException as exc:
        out = _ftpipe_pack(exc)
    try:
        data = pickle.dumps(out, 5)
    except BaseException as exc:
        data = pickle.dumps(_ftpipe_pack(TypeError(
            f"the result ({type(out[1]).__name__}) cannot be pickled back to the main interpreter: {exc}"
        )), 5)
    del out
    _ftpipe_send(data)
"""


def _backend() -> Any:
    """Return the module family to drive subinterpreters with, or None."""
    try:
        import concurrent.interpreters as public  # type: ignore[import-not-found,unused-ignore]  # 3.14+

        return public
    except ImportError:
        pass
    if sys.version_info[:2] == (3, 13):
        try:
            import _interpqueues
            import _interpreters

            return (_interpreters, _interpqueues)
        except ImportError:
            return None
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
    """CPython 3.13's ``_interpreters`` + ``_interpqueues`` (also on 3.13t)."""

    def __init__(self, modules: tuple[Any, Any]) -> None:
        self._interp, self._queues = modules
        self._queue = self._queues.create(0, 0, 1)  # maxsize, fmt, unboundop
        self._id = self._interp.create("isolated")

    def exec(self, code: str, **names: Any) -> None:
        err = self._interp.exec(self._id, code, shared=names)
        if err is not None:  # only our own bootstrap can fail here; user errors are packed
            raise RuntimeError(
                f"subinterpreter bootstrap failed: {err.formatted}\n{err.errdisplay}"
            )

    def send_line(self) -> str:
        return f"import _interpqueues\n_ftpipe_send = lambda d, q={self._queue}: _interpqueues.put(q, d, 0, 1)\n"

    def receive(self) -> bytes:
        data, _fmt, *_ = self._queues.get(self._queue)
        return data  # type: ignore[no-any-return]

    def close(self) -> None:
        self._interp.destroy(self._id)
        self._queues.destroy(self._queue)


class _Public314:  # pragma: no cover - no 3.14 on the CI machines yet
    """CPython 3.14+ ``concurrent.interpreters``."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self._queue = module.create_queue()
        self._interp = module.create()

    def exec(self, code: str, **names: Any) -> None:
        if names:
            self._interp.prepare_main(names)
        self._interp.exec(code)

    def send_line(self) -> str:
        self._interp.prepare_main(_ftpipe_q=self._queue)
        return "_ftpipe_send = _ftpipe_q.put_nowait\n"

    def receive(self) -> bytes:
        return self._queue.get_nowait()  # type: ignore[no-any-return]

    def close(self) -> None:
        self._interp.close()


class InterpreterContext:
    """A worker context that runs each call in the worker thread's own subinterpreter."""

    def __init__(
        self, name: str, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]
    ) -> None:
        self._name = name
        self._initializer = initializer
        self._initargs = initargs
        self._handle: Any = None

    def initialize(self) -> None:
        backend = _backend()
        self._handle = _Private313(backend) if isinstance(backend, tuple) else _Public314(backend)
        self._handle.exec(
            self._handle.send_line() + _BOOTSTRAP, _ftpipe_path=pickle.dumps(list(sys.path))
        )
        if self._initializer is not None:
            self.run(self._initializer, self._initargs, {})

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        target = fn
        while isinstance(target, functools.partial):
            target = target.func
        if getattr(target, "__module__", None) == "__main__":
            raise TypeError(
                f"interpreter executor {self._name!r}: {fn!r} is defined in __main__; a "
                "subinterpreter imports functions by module and qualified name, so move it "
                "into an importable module"
            )
        try:
            task = pickle.dumps((fn, args, kwargs), protocol=5)
        except Exception as exc:
            raise TypeError(
                f"interpreter executor {self._name!r}: cannot send {fn!r} and its arguments "
                f"to a subinterpreter: {type(exc).__name__}: {exc}"
            ) from exc
        self._handle.exec("_ftpipe_call()", _ftpipe_task=task)
        ok, value, tb = pickle.loads(self._handle.receive())
        if ok:
            return value
        raise unpack_exception(value, tb, "interpreter", self._name)

    def finalize(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


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
