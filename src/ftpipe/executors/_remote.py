"""Exceptions that come back from another interpreter or process, with their traceback."""

from __future__ import annotations

import pickle
import re
import traceback
from typing import Any

from .._engine._calls import RemoteTraceback, call_chunk, pack_failures

__all__ = [
    "RemoteTraceback",
    "pack_exception",
    "packed_chunk",
    "portable_chunk",
    "unpack_exception",
]

_REFUSED = re.compile(r"module '?([\w.]+)'? does not support loading in subinterpreters")


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


def portable_chunk(packed: Any, where: str) -> Any:
    """Replace each result of a packed chunk outcome that does not pickle by a failure.

    Called only after pickling the whole outcome failed: a result that cannot
    travel fails its own input, with a ``TypeError`` saying why, not the chunk.
    """
    results, failures, seconds = packed
    results = list(results)
    for i, result in enumerate(results):
        if i in failures:
            continue
        try:
            pickle.dumps(result, protocol=5)
        except Exception as exc:  # noqa: BLE001 - any pickling error
            err = TypeError(
                f"the result ({type(result).__name__}) cannot be pickled back to the parent: {exc}"
            )
            failures[i] = pack_exception(err, where)
            results[i] = None
    return results, failures, seconds


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


def packed_chunk(*args: Any) -> Any:
    """``call_chunk(*args)`` with its failures packed, for a worker that cannot pack them itself.

    A subinterpreter runs chunks of generator and async functions through this
    (its bootstrap packs only the chunks it runs inline): the caller's side
    unpacks every chunk's failures, and exceptions lose their traceback when pickled.
    """
    return pack_failures(call_chunk(*args), lambda e: pack_exception(e, "in subinterpreter"))
