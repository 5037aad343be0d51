"""Hypothesis profiles and leak checks for the stress and fault suite.

Profiles (``FTPIPE_STRESS_PROFILE``, default ``ci``):

- ``ci``: a fixed example budget per property, sized so ``pytest stress/`` takes
  a few minutes on 2 cores (3.13t, GIL off).  Derandomized: CI sees the same
  examples every run, so a red run is reproducible from the log alone.
- ``soak``: random examples until ``FTPIPE_SOAK_SECONDS`` (default 600) have
  passed for each property, e.g.
  ``FTPIPE_STRESS_PROFILE=soak FTPIPE_SOAK_SECONDS=3600 nox -s stress``.
- ``dev``: a handful of examples, for editing the suite itself.

Every test here runs a leak check afterwards: no new threads, no new child
processes, no new ``/dev/shm`` segments once the test (and its grace period) is over.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ftpipe
import ftpipe._runtime as runtime

# isort: split
import hypothesis  # noqa: F401  (imported before the GIL check: the tests use it)
import psutil
import pytest
from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("FTPIPE_STRESS_PROFILE", "ci")
SOAK_SECONDS = float(os.environ.get("FTPIPE_SOAK_SECONDS", "600"))

# Threads, children and segments get this long to go away before they count as leaked.
LEAK_GRACE_S = 5.0

_COMMON = dict(
    deadline=None,  # timings on a shared 2-core machine are noise; termination is checked explicitly
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
    print_blob=True,
    database=None,
)
settings.register_profile("ci", derandomize=True, **_COMMON)
settings.register_profile("dev", **_COMMON)
# Hypothesis has no wall-clock budget: soak() reruns a property in rounds of this
# many fresh random examples until FTPIPE_SOAK_SECONDS have passed.
settings.register_profile("soak", max_examples=200, **_COMMON)
settings.load_profile(PROFILE)


def budget(ci: int) -> settings:
    """Settings for one property: ``ci`` examples under ``ci``, a round of them otherwise."""
    if PROFILE == "dev":
        return settings(max_examples=max(3, ci // 10))
    if PROFILE == "soak":
        return settings(max_examples=max(ci, 200))
    return settings(max_examples=ci)


def soak(prop: Callable[[], None]) -> int:
    """Run hypothesis property ``prop`` once, or in rounds until the soak time is spent.

    Returns:
        How many rounds ran (1 outside the soak profile).
    """
    rounds = 0
    end = time.monotonic() + SOAK_SECONDS
    while True:
        prop()
        rounds += 1
        if PROFILE != "soak" or time.monotonic() >= end:
            return rounds


# Examples run per property, printed at the end of the session (the closing note quotes it).
EXAMPLES: Counter[str] = Counter()
_examples_lock = threading.Lock()


def count_example(prop: str) -> None:
    """Record one example of property ``prop`` (hypothesis's own statistics skip nested givens)."""
    with _examples_lock:
        EXAMPLES[prop] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not EXAMPLES:
        return
    terminalreporter.section(f"ftpipe stress: examples per property (profile {PROFILE})")
    for prop, n in sorted(EXAMPLES.items()):
        terminalreporter.write_line(f"{prop}: {n}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if PROFILE == "soak":
        # pytest-timeout's per-test default would cut a soak short.
        for item in items:
            item.add_marker(pytest.mark.timeout(SOAK_SECONDS * 3 + 600))


def pytest_report_header(config: pytest.Config) -> str:
    info = ftpipe.runtime_info(find_others=False)
    extra = f", {SOAK_SECONDS:.0f}s per property" if PROFILE == "soak" else ""
    return f"ftpipe stress profile: {PROFILE}{extra}; {info.gil_summary}; {info.usable_cores} usable cores"


def pytest_configure(config: pytest.Config) -> None:
    if runtime.is_free_threaded() and runtime.gil_enabled() and os.environ.get("PYTHON_GIL") != "1":
        culprits = ", ".join(runtime.gil_reenabled_by()) or "a module imported before ftpipe"
        pytest.exit(
            f"ftpipe stress: the GIL was re-enabled by {culprits}",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


# -- leak checks -------------------------------------------------------------------------


def live_threads() -> set[threading.Thread]:
    """Threads started from Python (native ones cannot be joined and are not ours)."""
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


def child_pids() -> set[int]:
    """PIDs of this process's live (non-zombie) descendants."""
    out = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            # multiprocessing's forkserver and resource tracker live as long as the
            # process by design; their children (the workers) still count.
            if any(h in " ".join(child.cmdline()) for h in _PROCESS_LIFETIME_HELPERS):
                continue
            out.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return out


_PROCESS_LIFETIME_HELPERS = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")


def shm_segments() -> set[str]:
    """Names in /dev/shm (empty where it does not exist)."""
    shm = Path("/dev/shm")
    return {p.name for p in shm.iterdir()} if shm.is_dir() else set()


# /dev/shm is shared by everything on the machine (other test runs included): a
# segment counts as ours only when the pid ftpipe puts in its name
# (ftpipe-<pid>-...) is this process, a descendant seen alive, or a child a test
# registered (it may be dead by the time we look).
_our_pids: set[int] = {os.getpid()}
_SEGMENT_PID = re.compile(r"^ftpipe-(\d+)-")


def register_child(pid: int) -> None:
    """Count shared-memory segments named after ``pid`` as this session's."""
    with _examples_lock:
        _our_pids.add(pid)


def _note_descendants() -> None:
    try:
        pids = {c.pid for c in psutil.Process().children(recursive=True)}
    except psutil.Error:
        return
    with _examples_lock:
        _our_pids.update(pids)


def our_segments(names: set[str]) -> set[str]:
    _note_descendants()
    out = set()
    for name in names:
        match = _SEGMENT_PID.match(name)
        if match and int(match.group(1)) in _our_pids:
            out.add(name)
    return out


class Snapshot:
    """What was alive before a test; ``leaks()`` says what is new and still alive after."""

    def __init__(self) -> None:
        self.threads = live_threads()
        self.children = child_pids()
        _note_descendants()
        self.shm = shm_segments()

    def leaks(self, grace: float = LEAK_GRACE_S) -> list[str]:
        deadline = time.monotonic() + grace
        for thread in live_threads() - self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        problems = []
        threads = [t for t in live_threads() - self.threads if t.is_alive()]
        if threads:
            problems.append("threads: " + ", ".join(repr(t.name) for t in threads))
        # Child processes and segments are released by threads we just joined, so
        # by now they are gone unless leaked; still allow the rest of the grace.
        while True:
            children = child_pids() - self.children
            shm = our_segments(shm_segments() - self.shm)
            if not (children or shm) or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # polling the OS: there is nothing to wait on
        if children:
            problems.append(f"child processes: {sorted(children)}")
        if shm:
            problems.append(f"/dev/shm segments: {sorted(shm)}")
        return problems


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """Fail a test that leaves threads, child processes or shared-memory segments behind."""
    snap = Snapshot()
    yield
    problems = snap.leaks()
    if problems:
        pytest.fail("test leaked " + "; ".join(problems))
