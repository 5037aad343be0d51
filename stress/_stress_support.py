"""Helpers shared by the stress tests: executor availability, and running a body under
a hard time bound (stage functions live in ``_stage_fns``)."""

from __future__ import annotations

import faulthandler
import sys
import threading
from collections.abc import Callable
from typing import Any

import ftpipe


def available_executor_kinds() -> tuple[str, ...]:
    """Executor kind names registered once ``ftpipe.executors`` (if written yet) is imported."""
    try:
        import ftpipe.executors  # noqa: F401
    except ImportError:
        pass
    from ftpipe._engine import executor_kind_names

    kinds = executor_kind_names()
    executors = sys.modules.get("ftpipe.executors")
    available = getattr(executors, "subinterpreters_available", None)
    if available is not None and not available():
        # Registered everywhere, usable only on 3.13+: pipe() refuses it at build time.
        kinds = tuple(k for k in kinds if k != "interpreter")
    return kinds


def run_in_subprocess() -> Any:
    """``ftpipe.run_in_subprocess`` once it exists, else None."""
    available_executor_kinds()
    fn = getattr(ftpipe, "run_in_subprocess", None)
    if fn is None:
        executors = sys.modules.get("ftpipe.executors")
        fn = getattr(executors, "run_in_subprocess", None)
    return fn


def all_stacks() -> str:
    """Every thread's current stack, for a hang report."""
    import io
    import tempfile

    with tempfile.TemporaryFile("w+") as f:
        faulthandler.dump_traceback(f, all_threads=True)
        f.seek(0)
        text = f.read()
    names = {t.ident: t.name for t in threading.enumerate()}
    buf = io.StringIO(text)
    buf.write(f"\nthreads: {names}\n")
    return buf.getvalue()


class Hang(AssertionError):
    """A bounded body did not finish in time."""


def bounded(
    body: Callable[[], Any], timeout: float, on_hang: Callable[[], str] | None = None
) -> Any:
    """Run ``body`` in a thread; return its result, re-raise its exception, or fail on a hang.

    The point is to turn a deadlock into a test failure with every thread's stack,
    instead of a pytest-timeout kill that says nothing about where it hung.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = body()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="stress-bounded-body", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        extra = on_hang() if on_hang is not None else ""
        raise Hang(f"did not finish within {timeout}s (hang?)\n{extra}\n{all_stacks()}")
    if "error" in box:
        raise box["error"]
    return box.get("result")


def ftpipe_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ftpipe")]


def python() -> str:
    return sys.executable
