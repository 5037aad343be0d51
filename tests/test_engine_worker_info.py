"""``ftpipe.worker_info()`` and ``pipe(initializer=, initargs=)`` on every kind of stage."""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import context_workloads as cw
import ftpipe
from ftpipe.executors import BrokenWorkerError, subinterpreters_available

needs_subinterpreters = pytest.mark.skipif(
    not subinterpreters_available(), reason="isolated subinterpreters need CPython 3.13+"
)
POOL_KINDS = [
    pytest.param("process", id="process"),
    pytest.param("interpreter", id="interpreter", marks=needs_subinterpreters),
]


def _run(builder: ftpipe.PipelineBuilder) -> list[Any]:
    with builder.build() as pipeline:
        return list(pipeline)


@pytest.fixture
def fresh_inits() -> Any:
    with cw._lock:
        cw.INITS.clear()
    yield cw.INITS
    with cw._lock:
        cw.INITS.clear()


def test_outside_a_stage_call_there_is_no_worker_info() -> None:
    assert ftpipe.worker_info() is None
    with pytest.raises(RuntimeError, match="inside a stage call"):
        ftpipe.item_seed()


@pytest.mark.thread_unsafe  # counts initializer runs in module state
def test_thread_stage_workers_know_their_index_and_run_the_initializer_once(
    fresh_inits: list[Any],
) -> None:
    out = _run(
        ftpipe.PipelineBuilder()
        .add_source(range(200))
        .pipe(cw.info, concurrency=4, name="decode", initializer=cw.record_init, initargs=("t",))
    )
    assert [x for x, *_ in out] == list(range(200))
    # One initializer run per worker thread, each in its own thread, seeing its own info.
    assert len(fresh_inits) == 4
    assert sorted(info.worker for _, info, _, _ in fresh_inits) == [0, 1, 2, 3]
    assert len({tid for *_, tid in fresh_inits}) == 4
    index_of = {tid: info.worker for _, info, _, tid in fresh_inits}
    for _, info, _, tid in out:
        assert info.stage == "decode" and info.concurrency == 4
        assert index_of[tid] == info.worker  # the call ran in the worker that was initialized
    assert all(tag == "t" for tag, *_ in fresh_inits)


@pytest.mark.thread_unsafe
def test_async_stage_is_one_worker_with_its_concurrency(fresh_inits: list[Any]) -> None:
    out = _run(
        ftpipe.PipelineBuilder(seed=1)
        .add_source(range(20))
        .pipe(
            cw.async_seeded,
            concurrency=3,
            name="fetch",
            initializer=cw.record_init,
            initargs=("a",),
        )
    )
    assert [x for x, _, _ in out] == list(range(20))
    assert {info for *_, info in out} == {ftpipe.WorkerInfo("fetch", 0, 3)}
    assert [(tag, info) for tag, info, _, _ in fresh_inits] == [
        ("a", ftpipe.WorkerInfo("fetch", 0, 3))
    ]


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_pool_workers_know_their_index_and_run_the_initializer_once_each(kind: str) -> None:
    out = _run(
        ftpipe.PipelineBuilder()
        .add_source(range(300))
        .pipe(
            cw.inits_here,
            concurrency=2,
            executor=kind,
            name="work",
            initializer=cw.record_init,
            initargs=(kind,),
        )
    )
    assert [x for x, *_ in out] == list(range(300))
    workers = set()
    for _, info, _, inits in out:
        assert info.stage == "work" and info.concurrency == 2 and info.worker in (0, 1)
        # This worker (process or subinterpreter) ran the initializer exactly once, as itself.
        assert len(inits) == 1
        tag, init_info, _, _ = inits[0]
        assert tag == kind and init_info == info
        workers.add(info.worker)
    if kind == "process":
        pid_of = {}
        for _, info, pid, _ in out:
            assert pid_of.setdefault(info.worker, pid) == pid  # one process per worker index
    assert workers  # at least one worker ran; which ones depends on timing


def test_a_users_executor_gives_stage_and_concurrency_but_no_index() -> None:
    with ThreadPoolExecutor(2) as ex:
        out = _run(
            ftpipe.PipelineBuilder()
            .add_source(range(50))
            .pipe(cw.info, concurrency=2, executor=ex, name="mine")
        )
        assert {info for _, info, _, _ in out} == {ftpipe.WorkerInfo("mine", None, 2)}
        # The executor's threads serve other work too: nothing is left behind there.
        assert ex.submit(ftpipe.worker_info).result() is None


def test_an_ftpipe_executor_instance_also_gives_no_index() -> None:
    with ftpipe.ThreadExecutor(2) as ex:
        out = _run(
            ftpipe.PipelineBuilder().add_source(range(10)).pipe(cw.info, executor=ex, name="m")
        )
    assert {info for _, info, _, _ in out} == {ftpipe.WorkerInfo("m", None, 1)}


def test_a_failing_initializer_stops_the_pipeline_naming_the_stage() -> None:
    with pytest.raises(LookupError, match="no such resource") as caught:
        _run(
            ftpipe.PipelineBuilder()
            .add_source(range(10))
            .pipe(cw.info, concurrency=2, name="setup", initializer=cw.failing_init)
        )
    assert any("initializer of stage 'setup'" in note for note in caught.value.__notes__)


def test_a_failing_initializer_in_a_worker_process_breaks_the_stage() -> None:
    with pytest.raises(BrokenWorkerError, match="failed to start") as caught:
        _run(
            ftpipe.PipelineBuilder()
            .add_source(range(10))
            .pipe(cw.info, executor="process", name="setup", initializer=cw.failing_init)
        )
    assert "no such resource" in str(caught.value.__cause__)


def test_item_seed_is_not_available_in_an_initializer() -> None:
    with pytest.raises(RuntimeError, match="not in an initializer"):
        _run(
            ftpipe.PipelineBuilder(seed=3)
            .add_source(range(3))
            .pipe(cw.info, initializer=cw.seed_in_init)
        )


def test_initializer_arguments_are_checked_at_build_time() -> None:
    b = ftpipe.PipelineBuilder().add_source(range(3))
    with pytest.raises(TypeError, match="stage 'x': initializer must be callable"):
        b.pipe(cw.info, name="x", initializer=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stage 'x': initargs must be a tuple"):
        b.pipe(cw.info, name="x", initializer=cw.record_init, initargs="t")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stage 'x': initializer must be a plain function"):
        b.pipe(cw.info, name="x", initializer=cw.async_seeded)
    with pytest.raises(ValueError, match="initargs given without an initializer"):
        b.pipe(cw.info, name="x", initargs=(1,))
    with (
        ThreadPoolExecutor(1) as ex,
        pytest.raises(ValueError, match="stage 'x': initializer= cannot be used with an executor"),
    ):
        b.pipe(cw.info, name="x", executor=ex, initializer=cw.record_init, initargs=("t",))
    with pytest.raises((TypeError, ValueError), match="stage 'x'"):
        b.pipe(cw.info, name="x", executor="process", initializer=lambda: None)


@needs_subinterpreters
def test_an_interpreter_initializer_must_be_importable() -> None:
    b = ftpipe.PipelineBuilder().add_source(range(3))
    with pytest.raises((TypeError, ValueError), match="stage 'x'"):
        b.pipe(cw.info, name="x", executor="interpreter", initializer=lambda: None)


def test_worker_info_is_per_thread() -> None:
    seen: list[Any] = []

    def peek() -> None:
        seen.append(ftpipe.worker_info())

    with ftpipe.PipelineBuilder().add_source(range(5)).pipe(cw.info).build() as p:
        list(p)
        thread = threading.Thread(target=peek)
        thread.start()
        thread.join()
    assert seen == [None]


@pytest.mark.parametrize(
    "kind", [pytest.param("thread", id="thread"), pytest.param("async", id="async"), *POOL_KINDS]
)
def test_worker_info_shows_the_concurrency_a_resize_set(kind: str) -> None:
    # Regression: worker_info().concurrency kept the configured size after a resize.
    feed: queue.Queue[int | None] = queue.Queue()
    fn = cw.async_seeded if kind == "async" else cw.info
    executor = kind if kind in ("process", "interpreter") else None

    async def fed() -> Any:
        # An async source hands over each item as it comes (a plain iterable's
        # chunk would wait for items the test feeds only after the resize).
        while (x := await asyncio.to_thread(feed.get)) is not None:
            yield x

    builder = ftpipe.PipelineBuilder(seed=1).add_source(fed())
    builder.pipe(fn, concurrency=2, executor=executor, name="s")
    with builder.build() as pipeline:
        outputs = iter(pipeline)
        for x in range(10):
            feed.put(x)
        before = [next(outputs) for _ in range(10)]
        pipeline.resize("s", 3)
        for x in range(10, 30):
            feed.put(x)
        feed.put(None)
        after = list(outputs)
    infos = {out[0]: (out[2] if kind == "async" else out[1]) for out in before + after}
    assert sorted(infos) == list(range(30))
    assert {infos[x].concurrency for x in range(10)} == {2}
    assert {infos[x].concurrency for x in range(10, 30)} == {3}
    assert all(infos[x].stage == "s" for x in infos)


def test_a_pool_worker_a_resize_started_sees_the_new_concurrency() -> None:
    # Regression: a stage pool's initializer told workers started after a resize
    # the size the pool was created with.
    from ftpipe._engine._context import StageStart
    from ftpipe.executors import ThreadExecutor

    seen: list[Any] = []
    start = StageStart("s", 1, lambda: seen.append(ftpipe.worker_info()), ())
    gate = threading.Event()
    with ThreadExecutor(max_workers=1, initializer=start) as pool:
        busy = pool.submit(gate.wait, 30)  # holds worker 0, so the next call needs worker 1
        pool.resize(2)
        pool.submit(int).result(timeout=30)
        gate.set()
        assert busy.result(timeout=30)
    # Each worker's initializer runs in its own thread, so the two may append in
    # either order; what each saw is fixed when the pool starts it.
    assert sorted(seen, key=lambda info: info.worker) == [
        ftpipe.WorkerInfo("s", 0, 1),
        ftpipe.WorkerInfo("s", 1, 2),
    ]
