"""Checks around every test: no leaked threads, and the GIL stays where the session put it.

On a free-threaded build the whole point of most tests is that they run with the GIL
off.  One extension module without free-threading support turns it back on, silently,
for the rest of the process; so the run fails loudly at start when ftpipe or a test
dependency did that, and a test fails when it did.  With ``PYTHON_GIL=1`` (the
tests-3.13t-gil session) the GIL must be on instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

# ftpipe first: importing it starts the watch that names a module re-enabling the GIL.
import ftpipe
import ftpipe._runtime as runtime

# isort: split
import hypothesis  # noqa: F401  (imported for the GIL check: the tests use it)
import numpy  # noqa: F401
import psutil  # noqa: F401
import pytest

# How long a test's threads get to finish after it returns before they count as leaked.
THREAD_JOIN_GRACE_S = 2.0

FREE_THREADED = runtime.is_free_threaded()
GIL_FORCED_ON = os.environ.get("PYTHON_GIL") == "1"


def _gil_problem() -> str | None:
    """Say what is wrong with the GIL's state for this session, or None."""
    if not FREE_THREADED:
        return None
    enabled = runtime.gil_enabled()
    if GIL_FORCED_ON and not enabled:
        return "PYTHON_GIL=1 is set but the GIL is disabled"
    if not GIL_FORCED_ON and enabled:
        names = runtime.gil_reenabled_by()
        culprit = f"importing {', '.join(names)}" if names else "a module imported before ftpipe"
        return (
            f"the GIL was re-enabled on this free-threaded build by {culprit};"
            " tests meant to run without the GIL would run with it"
        )
    return None


def pytest_report_header(config: pytest.Config) -> str:
    info = ftpipe.runtime_info(find_others=False)
    return f"ftpipe runtime: {info.gil_summary}; {info.usable_cores} usable cores"


def pytest_configure(config: pytest.Config) -> None:
    problem = _gil_problem()
    if problem is not None:
        pytest.exit(f"ftpipe: {problem}", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves threads running once it and its fixtures are done."""
    before = set(threading.enumerate())
    yield
    # Threads started by native code cannot be joined and are not ours to police.
    new = [
        t
        for t in threading.enumerate()
        if t not in before and not isinstance(t, threading._DummyThread)
    ]
    deadline = time.monotonic() + THREAD_JOIN_GRACE_S
    for thread in new:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [t for t in new if t.is_alive()]
    if alive:
        names = ", ".join(f"{t.name!r} (daemon={t.daemon})" for t in alive)
        pytest.fail(
            f"test leaked {len(alive)} thread(s) still alive after {THREAD_JOIN_GRACE_S}s: {names}"
        )


_gil_failure_reported = False


@pytest.fixture(autouse=True)
def _gil_stays_put() -> Iterator[None]:
    """Fail the test during which the GIL came back on (reported once: it stays on)."""
    global _gil_failure_reported
    yield
    if _gil_failure_reported:
        return
    problem = _gil_problem()
    if problem is not None:
        _gil_failure_reported = True
        pytest.fail(f"during this test {problem}")
