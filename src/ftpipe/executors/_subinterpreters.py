"""Which subinterpreter API this Python has: the one version gate of the interpreter executor.

CPython 3.14+ has the public ``concurrent.interpreters`` (written against its
documented API, untested here: no 3.14 on the CI machines); 3.13 (also 3.13t)
the private ``_interpreters`` module, whose API is frozen for that release;
anything older has none, and ``unavailable_reason()`` names the alternatives.
Both backends offer the same three operations: create an isolated
subinterpreter, run code in its ``__main__`` with names set, close it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Subinterpreter", "backend", "subinterpreters_available", "unavailable_reason"]


class Subinterpreter(Protocol):
    """One isolated subinterpreter, whatever the API underneath."""

    def exec(self, code: str, **names: Any) -> None:
        """Run ``code`` in its ``__main__`` with ``names`` bound there (shareable values)."""

    def close(self) -> None:
        """Destroy it, once its own non-daemon threads have ended."""


def backend() -> Callable[[], Subinterpreter] | None:
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
    return backend() is not None


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
