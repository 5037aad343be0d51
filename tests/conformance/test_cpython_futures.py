"""CPython's own ``concurrent.futures`` tests, run against ftpipe's executors.

CPython 3.13 ships its tests as ``test.test_concurrent_futures``: generic test
classes (``executor.py``, ``test_wait.py``, ``test_as_completed.py``,
``test_shutdown.py``, ``test_init.py``) that ``util.create_executor_tests``
combines with one mixin per pool.  Here the same classes are combined with a
mixin per ftpipe executor; ``ThreadExecutor`` and ``ProcessExecutor`` also run
the executor-level tests of ``test_thread_pool.py`` and ``test_process_pool.py``.

Nothing is copied: the tests are imported from the running interpreter's
standard library.  Three tests start a script that imports the pool from
``concurrent.futures``; they run as *ports* (``_ShutdownScripts``): the same
script and assertions, importing from ftpipe.  Every test that does not run
is in ``SKIPS`` with its reason, listed again in docs/executors.md
("Conformance").  Run by ``nox -s conformance`` (3.13t and 3.13).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import unittest
from concurrent.futures import BrokenExecutor
from typing import Any, ClassVar

import pytest

cf_util = pytest.importorskip(
    "test.test_concurrent_futures.util",
    reason="this Python does not ship CPython's test.test_concurrent_futures (3.13+ does)",
)

# isort: split
import cf_helpers  # noqa: E402
from test.support import captured_stderr  # noqa: E402
from test.support.script_helper import assert_python_ok  # noqa: E402
from test.test_concurrent_futures import executor as cf_executor  # noqa: E402
from test.test_concurrent_futures import (  # noqa: E402
    test_as_completed,
    test_init,
    test_process_pool,
    test_shutdown,
    test_thread_pool,
    test_wait,
)

import ftpipe  # noqa: E402
from ftpipe.executors import RemoteTraceback, subinterpreters_available  # noqa: E402

pytestmark = [pytest.mark.conformance, pytest.mark.thread_unsafe]

# The directory ftpipe was imported from: the ported scripts must test the same copy.
_FTPIPE_PATH = os.path.dirname(os.path.dirname(os.path.abspath(ftpipe.__file__)))

# (class name suffix, test name) -> why it does not run.  Suffixes are the
# generic class names as create_executor_tests strips them ("ExecutorShutdown").
PRIVATE = "reads a private attribute of CPython's pools"
STDLIB_ONLY = "a ProcessPoolExecutor-only feature"
SKIPS: dict[tuple[str, str], str] = {
    ("FailingInitializer", "test_initializer"): (
        "reads the private `_broken` attribute and expects the failure logged to the "
        "`concurrent.futures` logger (CPython's own logging); the contract it checks "
        "runs as test_initializer_breaks_the_executor"
    ),
    ("ThreadPoolExecutor", "test_hang_global_shutdown_lock"): (
        "exercises the stdlib's own pools only (hard-coded ThreadPoolExecutor and a "
        "fork-context ProcessPoolExecutor)"
    ),
    ("ThreadPoolExecutor", "test_process_fork_from_a_threadpool"): (
        "exercises the stdlib's own ThreadPoolExecutor (hard-coded) and fork"
    ),
    ("ProcessPoolExecutor", "test_killed_child"): (
        f"{PRIVATE} (`_processes`); tests/test_executors_process.py::"
        "test_dead_worker_breaks_the_executor_quickly checks the same contract"
    ),
    ("ProcessPoolExecutor", "test_traceback"): (
        "checks the type of CPython's private `_RemoteTraceback`; the same check with "
        "ftpipe's RemoteTraceback runs as test_traceback_reaches_the_caller"
    ),
    ("ProcessPoolExecutor", "test_saturation"): f"{PRIVATE} (`_processes`)",
    ("ProcessPoolExecutor", "test_idle_process_reuse_one"): f"{PRIVATE} (`_processes`)",
    ("ProcessPoolExecutor", "test_idle_process_reuse_multiple"): f"{PRIVATE} (`_processes`)",
    ("ProcessPoolExecutor", "test_max_tasks_per_child"): (
        f"{STDLIB_ONLY} (`max_tasks_per_child`, `mp_context`)"
    ),
    ("ProcessPoolExecutor", "test_max_tasks_per_child_defaults_to_spawn_context"): (
        f"{STDLIB_ONLY} (`max_tasks_per_child`, `_mp_context`)"
    ),
    ("ProcessPoolExecutor", "test_max_tasks_early_shutdown"): (
        f"{STDLIB_ONLY} (`max_tasks_per_child`, `mp_context`)"
    ),
    ("ProcessPoolExecutor", "test_python_finalization_error"): (
        "patches CPython's private `threading._start_joinable_thread` to break "
        "ProcessPoolExecutor's manager thread, and passes `mp_context`"
    ),
}


class _FtpipeMixin(cf_util.ExecutorMixin):
    """What every ftpipe executor shares: no ``mp_context``, events that reach its workers."""

    worker_count = 5

    def create_event(self) -> Any:
        return threading.Event()


class ThreadExecutorMixin(_FtpipeMixin):
    executor_type = ftpipe.ThreadExecutor


class ProcessExecutorMixin(_FtpipeMixin):
    executor_type = ftpipe.ProcessExecutor
    _manager: ClassVar[Any] = None

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        # One manager per class (CPython starts one per test): its events reach the workers.
        cls._manager = multiprocessing.get_context("forkserver").Manager()
        cls.addClassCleanup(cls._manager.shutdown)

    def get_context(self) -> Any:
        # ExecutorMixin passes mp_context only when `ctx` is set, which it is not here.
        return multiprocessing.get_context("forkserver")

    def create_event(self) -> Any:
        return self._manager.Event()


@unittest.skipUnless(subinterpreters_available(), "isolated subinterpreters need CPython 3.13+")
class InterpreterExecutorMixin(_FtpipeMixin):
    executor_type = ftpipe.InterpreterExecutor

    def create_event(self) -> Any:
        event = cf_helpers.PipeEvent()
        self.addCleanup(event.close)
        return event


class _ShutdownScripts:
    """test_shutdown.py's script tests, the script importing the executor from ftpipe.

    Each is CPython's test with ``from concurrent.futures import ...`` replaced by
    ``from ftpipe import ...`` and the ``mp_context`` branch dropped.
    """

    executor_type: Any
    assertFalse: Any  # noqa: N815 - unittest.TestCase's
    assertEqual: Any  # noqa: N815
    assertIn: Any  # noqa: N815

    def _run(self, script: str) -> tuple[int, bytes, bytes]:
        return assert_python_ok(  # type: ignore[no-any-return]
            "-c", script.format(executor_type=self.executor_type.__name__), PYTHONPATH=_FTPIPE_PATH
        )

    def test_interpreter_shutdown(self) -> None:
        rc, out, err = self._run(
            """if 1:
            from ftpipe import {executor_type}
            from time import sleep
            from test.test_concurrent_futures.test_shutdown import sleep_and_print
            if __name__ == "__main__":
                t = {executor_type}(5)
                t.submit(sleep_and_print, 1.0, "apple")
            """
        )
        self.assertFalse(err)
        self.assertEqual(out.strip(), b"apple")

    def test_submit_after_interpreter_shutdown(self) -> None:
        rc, out, err = self._run(
            """if 1:
            import atexit
            @atexit.register
            def run_last():
                try:
                    t.submit(id, None)
                except RuntimeError:
                    print("runtime-error")
                    raise
            from ftpipe import {executor_type}
            if __name__ == "__main__":
                t = {executor_type}(5)
            """
        )
        self.assertIn("RuntimeError: cannot schedule new futures", err.decode())
        self.assertEqual(out.strip(), b"runtime-error")

    def test_hang_gh83386(self) -> None:
        rc, out, err = self._run(
            """if True:
            from ftpipe import {executor_type}
            from test.test_concurrent_futures.test_shutdown import sleep_and_print
            if __name__ == "__main__":
                t = {executor_type}(max_workers=3)
                t.submit(sleep_and_print, 1.0, "apple")
                t.shutdown(wait=False)
            """
        )
        self.assertFalse(err)
        self.assertEqual(out.strip(), b"apple")


class _InitializerContract:
    """test_init.py's FailingInitializer test without ``_broken`` and the logger."""

    executor: Any
    assertRaises: Any  # noqa: N815

    def test_initializer_breaks_the_executor(self) -> None:
        try:
            future = self.executor.submit(test_init.get_init_status)
        except BrokenExecutor:
            pass  # perhaps the executor is already broken
        else:
            with self.assertRaises(BrokenExecutor):
                future.result()
        # Once a call has failed with BrokenExecutor, submit() is guaranteed to fail
        # (CPython's test waits for `_broken` to be set first; no wait is needed here).
        with self.assertRaises(BrokenExecutor):
            self.executor.submit(test_init.get_init_status)


class _RemoteTracebackPort:
    """test_process_pool.py's test_traceback with ftpipe's RemoteTraceback."""

    executor: Any
    assertRaises: Any  # noqa: N815
    assertIs: Any  # noqa: N815
    assertEqual: Any  # noqa: N815
    assertIn: Any  # noqa: N815

    def test_traceback_reaches_the_caller(self) -> None:
        future = self.executor.submit(test_process_pool.ProcessPoolExecutorTest._test_traceback)
        with self.assertRaises(Exception) as cm:
            future.result()
        exc = cm.exception
        self.assertIs(type(exc), RuntimeError)
        self.assertEqual(exc.args, (123,))
        cause = exc.__cause__
        self.assertIs(type(cause), RemoteTraceback)
        self.assertIn("raise RuntimeError(123) # some comment", str(cause))
        with captured_stderr() as f1:
            try:
                raise exc
            except RuntimeError:
                sys.excepthook(*sys.exc_info())
        self.assertIn("raise RuntimeError(123) # some comment", f1.getvalue())


def _strip(name: str) -> str:
    # As util.create_executor_tests names its classes.
    if name.endswith(("Mixin", "Tests")):
        return name[:-5]
    return name[:-4] if name.endswith("Test") else name


def _combine(generic: type, mixin: type, extras: tuple[type, ...] = ()) -> None:
    suffix = _strip(generic.__name__)
    name = f"{_strip(mixin.__name__)}{suffix}Test"
    if issubclass(generic, unittest.TestCase):
        # A concrete CPython class (ThreadPoolExecutorTest): our mixin must come
        # before the pool mixin it already has.
        bases: tuple[type, ...] = (*extras, mixin, generic)
    else:
        bases = (*extras, generic, mixin, cf_util.BaseTestCase)
    cls = type(name, bases, {"__module__": __name__})
    for (where, test), reason in SKIPS.items():
        if where == suffix and hasattr(cls, test):
            setattr(cls, test, unittest.skip(reason)(getattr(cls, test)))
    globals()[name] = cls


MIXINS = (ThreadExecutorMixin, ProcessExecutorMixin, InterpreterExecutorMixin)

for _mixin in MIXINS:
    _combine(test_wait.WaitTests, _mixin)
    _combine(test_as_completed.AsCompletedTests, _mixin)
    _combine(test_shutdown.ExecutorShutdownTest, _mixin, (_ShutdownScripts,))
    _combine(test_init.InitializerMixin, _mixin)
    _combine(test_init.FailingInitializerMixin, _mixin, (_InitializerContract,))

# ExecutorTest, plus each pool's own executor-level tests where they apply.
_combine(test_thread_pool.ThreadPoolExecutorTest, ThreadExecutorMixin)
_combine(test_process_pool.ProcessPoolExecutorTest, ProcessExecutorMixin, (_RemoteTracebackPort,))
_combine(cf_executor.ExecutorTest, InterpreterExecutorMixin)
