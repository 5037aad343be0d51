"""Exceptions that come back from another interpreter or process, with their traceback."""

from __future__ import annotations

import pickle
import re
import traceback

__all__ = ["RemoteTraceback", "pack_exception", "unpack_exception"]

_REFUSED = re.compile(r"module '?([\w.]+)'? does not support loading in subinterpreters")


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker; set as its ``__cause__``."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


def pack_exception(exc: BaseException, where: str) -> tuple[BaseException, str]:
    """Return ``(exception, traceback text)`` ready to pickle back to the caller.

    An exception that cannot be pickled is replaced by a ``RuntimeError``
    carrying its type, message and traceback, so the caller always gets one.
    """
    text = f"[{where}]\n" + "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc, protocol=5))
    except Exception:
        exc = RuntimeError(
            f"{type(exc).__qualname__}: {exc} (the original exception could not be pickled)"
        )
    return exc, text


def unpack_exception(exc: BaseException, tb: str, kind: str, name: str) -> BaseException:
    """Attach the remote traceback; turn subinterpreter import refusals into a clear ImportError."""
    exc.__cause__ = RemoteTraceback(tb)
    if isinstance(exc, ImportError):
        match = _REFUSED.search(tb) or _REFUSED.search(str(exc))
        if match:
            module = match.group(1)
            clear = ImportError(
                f"{kind} executor {name!r}: module {module!r} does not support loading in "
                "subinterpreters; use executor='process' (or executor='thread' on a "
                "free-threaded 3.13t build)",
                name=module,
            )
            clear.__cause__ = exc
            return clear
    return exc
