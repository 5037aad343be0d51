"""The measuring harness (diagnose/_sweep.py): warm-up, levels, failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ftpipe.diagnose._sweep import CallFailed, SweepSettings, _measure, make_caller, sweep


def test_slow_calls_warm_up_with_one_call_not_three() -> None:
    """The warm-up ran three calls serially whatever they cost (three 5 s calls: 15 s)."""
    warm_up = []
    main = threading.current_thread()

    def slow(x: int) -> int:
        if threading.current_thread() is main:
            warm_up.append(x)
        time.sleep(0.06)
        return x

    settings = SweepSettings((1,), window_s=0.05, min_rounds=1, max_rounds=1, budget_s=0.1)
    points = sweep(slow, list(range(10)), settings)
    assert warm_up == [0]
    assert [p.concurrency for p in points] == [1] and points[0].items >= 1


def test_a_function_that_seeds_itself_is_measured_with_a_seed_per_input() -> None:
    """item_seed() raised outside a pipeline, so the detector could not measure a stage
    function that seeds its augmentation with it (every call failed)."""
    import ftpipe

    seen: dict[int, set[int]] = {}

    def augment(x: int) -> int:
        seed = ftpipe.item_seed()
        seen.setdefault(x, set()).add(seed)  # each worker thread adds to its own input's set
        return seed

    settings = SweepSettings((1, 2), window_s=0.05, min_rounds=1, max_rounds=1, budget_s=1.0)
    points = sweep(augment, list(range(8)), settings)
    assert [p.concurrency for p in points] == [1, 2] and all(p.items > 0 for p in points)
    assert all(len(seeds) == 1 for seeds in seen.values()), "an input got two seeds"
    assert len({next(iter(seeds)) for seeds in seen.values()}) == len(seen) == 8
    with pytest.raises(RuntimeError, match="only available inside a stage call"):
        ftpipe.item_seed()  # the warm-up's thread is itself again


def _in_thread(target: Any, timeout: float = 10.0) -> tuple[bool, list[BaseException]]:
    """Run ``target`` in a daemon thread; return (finished in time, what it raised)."""
    raised: list[BaseException] = []

    def body() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - returned for the test to look at
            raised.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive(), raised


def _probe_threads_end(threads: list[threading.Thread] | None = None, timeout: float = 5.0) -> bool:
    """Whether ``threads`` (by default every probe thread of the process) end in time.

    A test that runs beside copies of itself (pytest-run-parallel) passes the threads it
    saw: the others' probe threads come and go meanwhile, and one still starting cannot
    be joined.
    """
    if threads is None:
        threads = [t for t in threading.enumerate() if t.name.startswith("ftpipe-probe-")]
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return not [t for t in threads if t.is_alive()]


def test_a_worker_failing_before_the_start_is_reported_not_waited_for() -> None:
    """The sweep hung on its start barrier when a worker failed before reaching it.

    _sweep.py ``_measure``: each worker sets up its caller (for an async function, an
    event loop of its own) before ``barrier.wait()``, outside any ``try``; when that
    raised, the worker was gone, and the main thread and the other workers waited on a
    ``threading.Barrier(c + 1)`` with no timeout, forever.
    """

    workers: list[threading.Thread] = []

    def caller() -> tuple[Callable[[Any], Any], Callable[[], None]]:
        workers.append(threading.current_thread())
        if threading.current_thread().name == "ftpipe-probe-1":
            raise OSError("too many open files")
        return (lambda x: x), (lambda: None)

    finished, raised = _in_thread(lambda: _measure(caller, [1, 2, 3], 3, 0.05))
    assert finished, "_measure hung on its barrier"
    assert len(raised) == 1 and isinstance(raised[0], CallFailed)
    assert isinstance(raised[0].error, OSError) and "too many open files" in str(raised[0])
    assert len(workers) == 3 and _probe_threads_end(workers)


@pytest.mark.thread_unsafe(reason="patches threading.Thread.start for the whole process")
def test_a_thread_that_cannot_start_releases_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failing to start the second worker left the first waiting on the barrier forever."""
    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if self.name == "ftpipe-probe-1":
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    finished, raised = _in_thread(lambda: _measure(make_caller(abs), [1, 2, 3], 3, 0.05))
    monkeypatch.undo()
    assert finished and len(raised) == 1 and "can't start new thread" in str(raised[0])
    assert _probe_threads_end(), "a started worker is still waiting for the others"


class _Quit(BaseException):
    """Not an Exception: what SystemExit or a library's own BaseException looks like."""


def test_a_base_exception_from_the_function_is_a_failed_call() -> None:
    """A BaseException from the function killed its worker silently; the sweep went on.

    Workers caught ``Exception`` only: the thread died (an unhandled-exception
    warning), its calls were left out of the count, and the measurement was reported
    as if nothing had happened.
    """

    def quits(x: int) -> int:
        if threading.current_thread().name.startswith("ftpipe-probe-"):
            raise _Quit("stop")
        return x

    settings = SweepSettings((1, 2), window_s=0.05, min_rounds=1, max_rounds=1, budget_s=0.1)
    with pytest.raises(CallFailed) as info:
        sweep(quits, [1, 2, 3], settings)
    assert isinstance(info.value.error, _Quit)
