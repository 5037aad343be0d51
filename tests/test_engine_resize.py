"""Pipeline.resize: a running stage grows and shrinks without losing, repeating or reordering."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import ftpipe
import test_executors_workloads as w
from ftpipe.executors import WorkerPool, subinterpreters_available

KINDS = ["thread", "process"] + (["interpreter"] if subinterpreters_available() else [])


def slow_square(x: int) -> int:
    time.sleep(0.0005)
    return x * x


def pairs(x: int) -> Any:
    yield x
    yield -x


def drive(pipeline: ftpipe.Pipeline, stage: str, sizes: list[int], every: int) -> list[Any]:
    """Consume the pipeline, resizing ``stage`` to the next of ``sizes`` every ``every`` outputs."""
    out: list[Any] = []
    with pipeline:
        for value in pipeline:
            out.append(value)
            if len(out) % every == 0 and sizes:
                n = sizes.pop(0)
                pipeline.resize(stage, n)
                assert pipeline.stats()[stage].concurrency == n
    return out


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_resize_up_and_down_keeps_every_item_once(kind: str, ordered: bool) -> None:
    fn = slow_square if kind == "thread" else w.square
    executor = None if kind == "thread" else kind
    n = 600
    p = (
        ftpipe.PipelineBuilder()
        .add_source(range(n))
        .pipe(fn, concurrency=2, executor=executor, ordered=ordered, name="sq")
        .build()
    )
    out = drive(p, "sq", [4, 1, 3, 1, 2], every=100)
    expected = [x * x for x in range(n)]
    assert (out if ordered else sorted(out)) == expected


@pytest.mark.parametrize("retries", [0, 2])
@pytest.mark.parametrize("ordered", [True, False])
def test_resize_generator_stage(ordered: bool, retries: int) -> None:
    p = (
        ftpipe.PipelineBuilder()
        .add_source(range(400))
        .pipe(pairs, concurrency=1, ordered=ordered, retries=retries, name="g")
        .pipe(slow_square, concurrency=2, name="after")
        .build()
    )
    out = drive(p, "g", [3, 1, 5, 2], every=150)
    expected = [v * v for x in range(400) for v in (x, -x)]
    assert (out if ordered else sorted(out)) == (expected if ordered else sorted(expected))


def test_resize_async_stage_changes_calls_in_flight() -> None:
    in_flight = 0
    most = 0
    lock = threading.Lock()
    grown = threading.Event()

    async def call(x: int) -> int:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            if grown.is_set():
                most = max(most, in_flight)
        await asyncio.sleep(0.002)
        with lock:
            in_flight -= 1
        return x

    p = ftpipe.PipelineBuilder().add_source(range(300)).pipe(call, concurrency=1, name="a").build()
    out = []
    with p:
        for value in p:
            out.append(value)
            if value == 20:
                p.resize("a", 8)
                grown.set()
                assert p.stats()["a"].concurrency == 8
    assert out == list(range(300))
    assert most > 1


@pytest.mark.thread_unsafe  # counts threads by stage name, which other copies share
def test_stats_show_current_concurrency_and_threads_follow() -> None:
    gate = threading.Event()

    def wait_gate(x: int) -> int:
        gate.wait(30)
        return x

    p = ftpipe.PipelineBuilder().add_source(range(50)).pipe(wait_gate, name="s").build()
    with p:
        p.resize("s", 5)
        assert p.stats()["s"].concurrency == 5
        workers = [t for t in threading.enumerate() if t.name.startswith("ftpipe-s-")]
        assert len(workers) == 5
        p.resize("s", 2)
        assert p.stats()["s"].concurrency == 2
        gate.set()
        assert list(p) == list(range(50))


@pytest.mark.thread_unsafe  # counts the process's threads, which other tests start too
def test_shrunk_threads_retire() -> None:
    def fn(x: int) -> int:
        time.sleep(0.001)
        return x

    p = (
        ftpipe.PipelineBuilder()
        .add_source(range(100_000))
        .pipe(fn, concurrency=6, name="s")
        .build()
    )
    with p:
        it = iter(p)
        next(it)
        p.resize("s", 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            live = [t for t in threading.enumerate() if t.name.startswith("ftpipe-s-")]
            if len(live) == 1:
                break
            next(it)
        assert len(live) == 1


def test_resize_pool_changes_worker_count() -> None:
    p = (
        ftpipe.PipelineBuilder()
        .add_source(range(400))
        .pipe(w.with_pid, concurrency=1, executor="process", name="p")
        .build()
    )
    pids = set()
    with p:
        for i, (_, pid) in enumerate(p):
            if i == 20:
                p.resize("p", 3)
            if i > 20:
                pids.add(pid)
    assert len(pids) >= 2


def test_worker_pool_resize_directly() -> None:
    pool = ftpipe.executors.ThreadExecutor(1)
    try:
        assert isinstance(pool, WorkerPool)
        pool.resize(3)
        assert pool.max_workers == 3
        assert list(pool.map(w.square, range(20))) == [x * x for x in range(20)]
        pool.resize(1)
        assert list(pool.map(w.square, range(20))) == [x * x for x in range(20)]
        with pytest.raises(ValueError):
            pool.resize(0)
    finally:
        pool.shutdown()


def test_resize_errors() -> None:
    user = ThreadPoolExecutor(2)
    p = (
        ftpipe.PipelineBuilder()
        .add_source(range(10))
        .pipe(w.square, name="sq")
        .aggregate(2)
        .pipe(len, executor=user, name="mine")
        .build()
    )
    with pytest.raises(RuntimeError, match="not running yet; start it"):
        p.resize("sq", 2)
    with pytest.raises(ValueError, match=r"no stage named 'nope'.*'sq'"):
        p.resize("nope", 2)
    with p:
        with pytest.raises(TypeError, match="positive int"):
            p.resize("sq", 2.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="positive int"):
            p.resize("sq", 0)
        with pytest.raises(ValueError, match="aggregate"):
            p.resize("1:aggregate(2)", 2)
        with pytest.raises(ValueError, match="ThreadPoolExecutor instance you supplied"):
            p.resize("mine", 3)
        assert list(p) == [2] * 5
    with pytest.raises(RuntimeError, match="finished"):
        p.resize("sq", 2)
    user.shutdown()


def test_resize_after_the_stage_ended_is_ignored() -> None:
    # On threads from the start (inline=True would run the stage in the consumer's
    # thread, and a resize would then start its threads: test_engine_inline.py).
    b = ftpipe.PipelineBuilder(inline=False).add_source(range(5))
    p = b.pipe(w.square, name="sq").build()
    with p:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            t.name.startswith("ftpipe-sq-") for t in threading.enumerate()
        ):
            time.sleep(0.01)
        p.resize("sq", 4)  # the stage ended: no thread starts, nothing breaks
        assert not any(t.name.startswith("ftpipe-sq-") for t in threading.enumerate())
        assert list(p) == [x * x for x in range(5)]


@pytest.mark.parametrize("ordered", [True, False])
def test_switching_executors_mid_run_keeps_every_item_once(ordered: bool) -> None:
    """The move executor="auto" makes: a new generation of workers on the same channels."""
    kinds = [k for k in KINDS if k != "thread"] + ["thread"]
    n = 1500
    p = (
        ftpipe.PipelineBuilder()
        .add_source(range(n))
        .pipe(w.with_pid, concurrency=2, ordered=ordered, executor="auto", name="m")
        .pipe(lambda pair: pair[0], name="first")
        .build()
    )
    out: list[int] = []
    seen: set[str] = set()
    with p:
        run = p._run
        assert run is not None
        stage = run.stages[0]
        for value in p:
            out.append(value)
            if kinds and len(out) % 250 == 0:
                kind = kinds.pop(0)
                with run.resize_lock:
                    run._switch(stage, None if kind == "thread" else kind, 2)
                seen.add(p.stats()["m"].executor)
    assert (out if ordered else sorted(out)) == list(range(n))
    assert seen == set(KINDS)


@pytest.mark.thread_unsafe  # patches a module function for the whole process
def test_a_move_keeps_the_stream_open_while_the_old_workers_retire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: the last thread of the old generation ended the output stream when it
    retired before the first thread of the new one counted in, and the rest of the input
    was silently dropped.  Forced here: the new generation starts only once the old one
    has gone."""
    from ftpipe._engine import _resize

    n = 600
    original = _resize.grow_threads

    def after_the_old_generation(stage: Any, count: int, make: Any) -> None:
        old = stage.workforce.generation - 1
        deadline = time.monotonic() + 60
        while stage.workforce._live.get(old, 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        original(stage, count, make)

    monkeypatch.setattr(_resize, "grow_threads", after_the_old_generation)
    p = (
        ftpipe.PipelineBuilder()
        .add_source(range(n))
        .pipe(w.square, concurrency=2, name="sq")
        .build()
    )
    out: list[int] = []
    with p:
        run = p._run
        assert run is not None
        stage = run.stages[0]

        def move() -> None:
            with run.resize_lock:
                run._switch(stage, None, 2)

        mover = threading.Thread(target=move)
        for value in p:
            out.append(value)
            if len(out) == 100:
                mover.start()  # the consumer keeps taking items: the old workers can finish
        mover.join()
    assert sorted(out) == [x * x for x in range(n)]
