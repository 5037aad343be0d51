"""PersistentPools: stage pools kept from one pipeline (epoch) to the next."""

from __future__ import annotations

import functools
import gc
import os
import signal
import time
from typing import Any

import psutil
import pytest

import ftpipe
import test_executors_workloads as w
from ftpipe._engine import Pipeline
from ftpipe.executors import ProcessExecutor, subinterpreters_available
from ftpipe.executors._persistent import SETTLE_S, PersistentPools

pytestmark = pytest.mark.timeout(90)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(pids: set[int], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _reaped(pid: int, seconds: float = 5.0) -> bool:
    """Wait until ``pid`` is gone, zombie included: only then does its pool see it dead.

    (A forkserver child is reaped by the server, which then tells the pool; a
    worker killed the instant an epoch starts fails that epoch, as one killed
    during it does.)
    """
    deadline = time.monotonic() + seconds
    while psutil.pid_exists(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    time.sleep(0.1)
    return True


def _segments(prefix: str) -> list[str]:
    return [e for e in os.listdir("/dev/shm") if e.startswith(prefix)]


def _builder(n: int = 20, concurrency: int = 2, kind: str = "process") -> ftpipe.PipelineBuilder:
    return (
        ftpipe.PipelineBuilder()
        .add_source(range(n))
        .pipe(w.square, concurrency=2, name="threads")
        .pipe(w.slow_with_pid, executor=kind, concurrency=concurrency, name="load")
    )


def _epoch(pools: PersistentPools | None, builder: ftpipe.PipelineBuilder) -> list[Any]:
    config = builder.config()
    pipeline = Pipeline(config if pools is None else pools.attach(config))
    with pipeline:
        return list(pipeline)


def _pids(out: list[Any]) -> set[int]:
    return {pid for _, pid in out}


def test_every_epoch_uses_the_same_pool_and_gives_the_same_outputs() -> None:
    pools = PersistentPools()
    try:
        first = _epoch(pools, _builder())
        pool = pools.pools()["load"]
        assert isinstance(pool, ProcessExecutor) and pool.max_workers == 2 and pool.name == "load"
        second = _epoch(pools, _builder())
        assert pools.pools() == {"load": pool}  # the thread stage has no pool
        assert _pids(first) == _pids(second) == set(pool.worker_pids())
        assert len(_pids(first)) == 2
        assert [x for x, _ in first] == [x for x, _ in second] == [x * x for x in range(20)]
        # Without persistence: the same outputs from workers of its own, gone after it.
        fresh = _epoch(None, _builder())
        assert [x for x, _ in fresh] == [x for x, _ in first]
        assert _pids(fresh).isdisjoint(_pids(first)) and _gone(_pids(fresh))
    finally:
        pools.close()
    assert _gone(_pids(first))
    assert not _segments(pool.shm_prefix)


def test_a_stage_whose_settings_changed_gets_a_new_pool_and_the_old_one_stops() -> None:
    with_pools = PersistentPools()
    try:
        before = _pids(_epoch(with_pools, _builder(concurrency=2)))
        after = _pids(_epoch(with_pools, _builder(concurrency=3)))
        assert before.isdisjoint(after) and _gone(before)
        assert with_pools.pools()["load"].max_workers == 3  # type: ignore[attr-defined]
        # A pipeline without the stage: its pool stops too.
        assert _epoch(with_pools, ftpipe.PipelineBuilder().add_source([1])) == [1]
        assert with_pools.pools() == {} and _gone(after)
    finally:
        with_pools.close()


def test_errors_retries_and_skips_are_the_same_as_with_a_pool_per_pipeline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def build(marks: str) -> ftpipe.PipelineBuilder:
        return (
            ftpipe.PipelineBuilder()
            .add_source(range(12))
            .pipe(functools.partial(w.fail_first_time, marks), executor="process", retries=1)
            .pipe(
                functools.partial(w.fail_on, 5),
                executor="process",
                concurrency=2,
                on_error="skip",
                name="skipper",
            )
            .pipe(functools.partial(w.fail_on, 9), executor="process", name="picky")
        )

    def outcome(pools: PersistentPools | None, marks: str) -> tuple[list[int], str, list[str]]:
        os.makedirs(marks)
        got: list[int] = []
        config = build(marks).config()
        pipeline = Pipeline(config if pools is None else pools.attach(config))
        with pipeline, pytest.raises(ValueError) as info:
            for x in pipeline:
                got.append(x)
        return got, str(info.value), getattr(info.value, "__notes__", [])

    pools = PersistentPools()
    try:
        expected = outcome(None, str(tmp_path / "plain"))
        assert expected[0] == [0, 1, 2, 3, 4, 6, 7, 8] and "bad item 9" in expected[1]
        assert any("picky" in note for note in expected[2])
        for epoch in range(2):
            assert outcome(pools, str(tmp_path / f"kept-{epoch}")) == expected
    finally:
        pools.close()


@pytest.mark.thread_unsafe  # one marks directory per test (see wait_for_marks)
def test_calls_left_running_by_an_abandoned_epoch_do_not_hold_up_the_next(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pools = PersistentPools()
    try:
        # Short calls: the pool is idle at once and serves the next epoch.
        pipeline = Pipeline(pools.attach(_builder(n=500).config()))
        with pipeline:
            next(iter(pipeline))
        kept = set(pools.pools()["load"].worker_pids())  # type: ignore[attr-defined]
        assert [x for x, _ in _epoch(pools, _builder())] == [x * x for x in range(20)]
        assert set(pools.pools()["load"].worker_pids()) == kept  # type: ignore[attr-defined]

        # Calls of a minute: the next epoch waits SETTLE_S at most, on a new pool.
        jobs = [(str(tmp_path), 60.0)] * 4
        slow = ftpipe.PipelineBuilder().add_source(jobs)
        slow.pipe(w.mark_then_sleep, executor="process", concurrency=2, name="load")
        pipeline = Pipeline(pools.attach(slow.config()))
        pipeline.start()
        busy = set(w.wait_for_marks(str(tmp_path), 2))
        start = time.monotonic()
        pipeline.close()  # an instance executor: the pipeline does not wait for its calls
        assert time.monotonic() - start < 2.0
        start = time.monotonic()
        out = _epoch(pools, _builder())
        assert time.monotonic() - start < SETTLE_S + 10.0
        assert [x for x, _ in out] == [x * x for x in range(20)]
        assert _pids(out).isdisjoint(busy) and _gone(busy)
    finally:
        pools.close()


def test_a_worker_killed_between_epochs_is_replaced() -> None:
    pools = PersistentPools()
    try:
        first = _pids(_epoch(pools, _builder()))
        os.kill(min(first), signal.SIGKILL)
        assert _reaped(min(first))
        out = _epoch(pools, _builder())
        assert [x for x, _ in out] == [x * x for x in range(20)]
        assert min(first) not in _pids(out)
    finally:
        pools.close()
    assert _gone(first | _pids(out))


@pytest.mark.skipif(not subinterpreters_available(), reason="needs subinterpreters")
def test_interpreter_stages_keep_their_pool() -> None:
    pools = PersistentPools()
    try:
        _epoch(pools, _builder(kind="interpreter"))
        pool = pools.pools()["load"]
        out = _epoch(pools, _builder(kind="interpreter"))
        assert pools.pools()["load"] is pool
        assert [x for x, _ in out] == [x * x for x in range(20)]
    finally:
        pools.close()


def test_close_and_collection_stop_every_worker() -> None:
    pools = PersistentPools()
    pids = _pids(_epoch(pools, _builder()))
    prefix = pools.pools()["load"].shm_prefix  # type: ignore[attr-defined]
    pools.close()
    pools.close()  # idempotent
    assert _gone(pids) and not _segments(prefix)
    with pytest.raises(RuntimeError, match="closed"):
        pools.attach(_builder().config())

    dropped = PersistentPools()
    pids = _pids(_epoch(dropped, _builder()))
    del dropped
    gc.collect()
    assert _gone(pids)


def test_stats_name_the_kind_of_a_kept_pool_not_its_lease() -> None:
    pools = PersistentPools()
    try:
        pipeline = Pipeline(pools.attach(_builder(n=4).config()))
        with pipeline:
            list(pipeline)
            load = next(s for s in pipeline.stats().stages if s.name == "load")
        assert load.executor == "process"
    finally:
        pools.close()
