"""ThreadExecutor and the WorkerPool seam it shares with the other executors."""

from __future__ import annotations

import threading
from concurrent.futures import BrokenExecutor, CancelledError

import pytest

import ftpipe
import test_executors_workloads as w
from ftpipe.executors import BrokenWorkerError, ThreadExecutor


# shares a module-scoped executor/endpoint or counts process-wide threads, workers or segments
@pytest.mark.thread_unsafe
def test_map_keeps_order_and_is_a_context_manager() -> None:
    with ThreadExecutor(3, name="t") as ex:
        assert list(ex.map(w.square, range(20))) == [x * x for x in range(20)]
    assert all(not t.name.startswith("t-") for t in threading.enumerate())


def test_exception_reaches_the_future() -> None:
    with ThreadExecutor(2) as ex:
        with pytest.raises(ValueError, match="boom on 3"):
            ex.submit(w.boom, 3).result()
        assert ex.submit(w.square, 4).result() == 16  # still usable


# shares a module-scoped executor/endpoint or counts process-wide threads, workers or segments
@pytest.mark.thread_unsafe
def test_workers_start_lazily_up_to_max_workers() -> None:
    with ThreadExecutor(2, name="lazy") as ex:
        assert ex.submit(w.square, 2).result() == 4
        started = [t for t in threading.enumerate() if t.name.startswith("lazy-")]
        assert len(started) == 1
        barrier = threading.Barrier(3)
        futures = [ex.submit(barrier.wait, 5) for _ in range(2)]
        barrier.wait(5)
        for f in futures:
            f.result()
        assert len([t for t in threading.enumerate() if t.name.startswith("lazy-")]) == 2


def test_initializer_runs_in_every_worker() -> None:
    local = threading.local()
    seen = []

    def init(tag: str) -> None:
        local.tag = tag
        seen.append(threading.current_thread().name)

    with ThreadExecutor(1, initializer=init, initargs=("x",)) as ex:
        assert ex.submit(lambda: local.tag).result() == "x"
    assert len(seen) == 1


def test_failing_initializer_breaks_the_executor() -> None:
    ex = ThreadExecutor(1, initializer=w.failing_initializer, name="init-stage")
    future = ex.submit(w.square, 2)
    with pytest.raises(BrokenWorkerError, match="init-stage.*initializer says no") as info:
        future.result(timeout=5)
    assert isinstance(info.value, BrokenExecutor)
    with pytest.raises(BrokenWorkerError):
        ex.submit(w.square, 3)
    ex.shutdown()


def test_shutdown_cancels_pending_calls_and_refuses_new_ones() -> None:
    ex = ThreadExecutor(1)
    gate = threading.Event()
    running = ex.submit(gate.wait, 5)
    pending = [ex.submit(w.square, i) for i in range(5)]
    ex.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert running.result(timeout=5) is True
    for f in pending:
        with pytest.raises(CancelledError):
            f.result(timeout=5)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(w.square, 1)
    ex.shutdown(wait=True)


@pytest.mark.parametrize(
    ("bad", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)],
)
def test_max_workers_must_be_a_positive_int(bad: object, error: type[Exception]) -> None:
    # Below 1 is concurrent.futures' ValueError (CPython's own tests match its wording);
    # not an int at all is a TypeError, as everywhere in ftpipe (_validate.positive_int).
    with pytest.raises(error, match="max_workers"):
        ThreadExecutor(bad)  # type: ignore[arg-type]


def test_public_names() -> None:
    for name in (
        "ThreadExecutor",
        "ProcessExecutor",
        "InterpreterExecutor",
        "BrokenWorkerError",
        "run_in_subprocess",
    ):
        assert name in ftpipe.__all__
        assert getattr(ftpipe, name) is getattr(ftpipe.executors, name)
    assert issubclass(ftpipe.BrokenWorkerError, BrokenExecutor)
