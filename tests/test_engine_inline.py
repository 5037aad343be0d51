"""Cheap stages in the consumer's thread: the move, and everything a stage promises there too."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import ftpipe
from ftpipe._engine import _inline

N = 20_000


@pytest.fixture
def cheap_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any measured cost counts as cheap, and no call as slow (but the ones a test makes
    take a whole second): a busy test machine can neither keep the move from happening
    nor undo it (the calls' cost still has to be under the threads' time per item)."""
    monkeypatch.setattr(_inline, "INLINE_MAX", 1.0)
    monkeypatch.setattr(_inline, "SLOW", 1.0)


def plus1(x: int) -> int:
    return x + 1


def times2(x: int) -> int:
    return x * 2


def builder(source: Any = None, **kwargs: Any) -> ftpipe.PipelineBuilder:
    b = ftpipe.PipelineBuilder(**kwargs).add_source(range(N) if source is None else source)
    return b.pipe(plus1, name="plus1").pipe(times2, name="times2")


def expected(n: int = N, start: int = 0) -> list[int]:
    return [(x + 1) * 2 for x in range(start, n)]


def until_inline(pipeline: ftpipe.Pipeline, out: list[Any]) -> None:
    """Take outputs into ``out`` until the pipeline's probe found its calls cheap."""
    for value in pipeline:
        out.append(value)
        tuning = pipeline.stats()["plus1"].tuning
        if tuning.startswith("inline: run in the consumer's thread"):
            return
    pytest.fail(f"never went inline; stats: {pipeline.stats()}")


def interrupted(
    pipeline: ftpipe.Pipeline, interrupt: threading.Event, *, then_closed: bool
) -> None:
    """Once inline, set ``interrupt``: the KeyboardInterrupt it causes reaches the consumer
    at once, after every earlier output (and, ``then_closed``, the pipeline is closed)."""
    out: list[int] = []
    with pipeline:
        until_inline(pipeline, out)
        interrupt.set()
        with pytest.raises(KeyboardInterrupt):
            out.extend(pipeline)
        if then_closed:
            with pytest.raises(StopIteration):
                next(pipeline)
    assert out == expected(len(out))


def calls_in(threads: list[int]) -> Callable[[int], int]:
    def record(x: int) -> int:
        threads.append(threading.get_ident())
        return x

    return record


@pytest.mark.usefixtures("cheap_enough")
def test_cheap_stages_run_in_the_consumers_thread_and_keep_every_item() -> None:
    threads: list[int] = []
    pipeline = builder().pipe(calls_in(threads), name="record").build()
    out: list[int] = []
    with pipeline:
        assert pipeline.stats()["record"].tuning == ""  # no note until the probe decides
        until_inline(pipeline, out)
        out.extend(pipeline)
        stats = pipeline.stats()
    assert out == expected()
    assert len(threads) == N
    assert set(threads) == {threading.get_ident()}, "every call ran in the consumer's thread"
    assert "us of CPU per item, source and stages" in stats["record"].tuning
    for name in ("plus1", "times2", "record"):
        assert (stats[name].items_in, stats[name].items_out) == (N, N), stats[name]
        assert stats[name].busy_s > 0
    assert stats["source"].items_out == N


@pytest.mark.parametrize(
    "kwargs",
    [
        {"inline": False},
        {"priority": "background"},
        {"concurrency": 2},
        {"ordered": False},
        {"on_error": "skip"},
        {"retries": 1},
    ],
)
@pytest.mark.usefixtures("cheap_enough")
def test_what_never_moves(kwargs: dict[str, Any]) -> None:
    threads: list[int] = []
    pipe_kwargs = {k: v for k, v in kwargs.items() if k not in ("inline", "priority")}
    top = {k: v for k, v in kwargs.items() if k in ("inline", "priority")}
    b = ftpipe.PipelineBuilder(**top).add_source(range(N))
    with b.pipe(calls_in(threads), **pipe_kwargs).build() as pipeline:
        out = list(pipeline)
    assert sorted(out) == list(range(N))
    assert threading.get_ident() not in threads


def test_inline_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="inline must be True or False, got str 'yes'"):
        ftpipe.PipelineBuilder(inline="yes")  # type: ignore[arg-type]


@pytest.mark.usefixtures("cheap_enough")
def test_a_call_turning_slow_sends_the_rest_back_to_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_inline, "SLOW", 1e-3)
    threads: list[int] = []
    slow_from = threading.Event()

    def sometimes_slow(x: int) -> int:
        threads.append(threading.get_ident())
        if slow_from.is_set() and len(threads) < mark[0] + 300:
            time.sleep(0.002)  # wall time: calls that wait
        return x

    mark = [N]

    pipeline = builder(range(N // 4)).pipe(sometimes_slow, name="slow").build()
    out: list[int] = []
    with pipeline:
        until_inline(pipeline, out)
        mark[0] = len(threads)
        slow_from.set()
        out.extend(pipeline)
        stats = pipeline.stats()
    assert out == expected(N // 4)
    assert stats["slow"].tuning.startswith("back on threads: calls took"), stats["slow"]
    assert threads[-1] != threading.get_ident(), "the last calls ran on threads again"
    assert stats["slow"].items_out == N // 4


@pytest.mark.usefixtures("cheap_enough")
def test_a_resize_while_inline_starts_the_workers() -> None:
    seen: list[Any] = []

    def info(x: int) -> int:
        seen.append(ftpipe.worker_info())
        return x

    pipeline = builder().pipe(info, name="info").build()
    out: list[int] = []
    with pipeline:
        until_inline(pipeline, out)
        assert seen[-1] == ftpipe.WorkerInfo("info", 0, 1)
        assert ftpipe.worker_info() is None, "the consumer's own thread is not a stage worker"
        pipeline.resize("info", 3)
        assert pipeline.stats()["info"].concurrency == 3
        assert pipeline.stats()["info"].tuning == "back on threads: resized to 3"
        out.extend(pipeline)
    assert out == expected()
    assert {i.concurrency for i in seen[-100:]} == {3}
    assert {i.worker for i in seen[-(N // 4) :]} > {0}


@pytest.mark.parametrize("inline", [True, False])
@pytest.mark.usefixtures("cheap_enough")
def test_an_error_inline_is_the_same_as_on_threads(inline: bool) -> None:
    bad = N - 100

    def fails_once(x: int) -> int:
        if x == (bad + 1) * 2:
            raise ValueError(f"bad {x}")
        return x

    pipeline = builder(inline=inline).pipe(fails_once, name="fails").build()
    out: list[int] = []
    with pipeline, pytest.raises(ValueError, match=f"bad {(bad + 1) * 2}") as caught:
        for value in pipeline:
            out.append(value)
    assert out == expected(bad)
    assert f"ftpipe: raised in stage 'fails' on input #{bad}" in caught.value.__notes__
    assert pipeline.stats()["fails"].tuning.startswith("inline") == inline


@pytest.mark.usefixtures("cheap_enough")
def test_a_source_error_inline_comes_after_its_items() -> None:
    def source() -> Iterator[int]:
        yield from range(N)
        raise OSError("disk gone")

    pipeline = builder(source()).build()
    out: list[int] = []
    with pipeline, pytest.raises(OSError, match="disk gone") as caught:
        for value in pipeline:
            out.append(value)
    assert out == expected()
    assert "ftpipe: raised by the source" in caught.value.__notes__
    assert pipeline.stats()["plus1"].tuning.startswith("inline")


@pytest.mark.usefixtures("cheap_enough")
def test_a_checkpoint_inline_and_after_going_back_resumes_exactly() -> None:
    out: list[int] = []
    with builder().build() as pipeline:
        until_inline(pipeline, out)
        out.extend(next(pipeline) for _ in range(10))
        inline_state = pipeline.state_dict()
        inline_at = len(out)
        pipeline.resize("times2", 2)  # back on threads with outputs still buffered here
        out.append(next(pipeline))
        buffered_state = pipeline.state_dict()
        buffered_at = len(out)
        out.extend(next(pipeline) for _ in range(5000))
        threaded_state = pipeline.state_dict()
        threaded_at = len(out)
        out.extend(pipeline)
    assert out == expected()
    for state, at in ((inline_state, inline_at), (buffered_state, buffered_at)):
        assert state["consumed"] == at
        with builder().build(state=state) as resumed:
            assert list(resumed) == expected(start=at)
    assert threaded_state["consumed"] == threaded_at
    with builder().build(state=threaded_state) as resumed:
        assert list(resumed) == expected(start=threaded_at)


@pytest.mark.usefixtures("cheap_enough")
def test_item_seeds_inline_are_the_seeds_on_threads() -> None:
    def seeded(x: int) -> tuple[int, int]:
        return x, ftpipe.item_seed()

    def run(inline: bool) -> tuple[list[Any], str]:
        b = ftpipe.PipelineBuilder(seed=7, inline=inline).add_source(range(N))
        with b.pipe(seeded, name="seeded").build() as pipeline:
            return list(pipeline), pipeline.stats()["seeded"].tuning

    inline_out, tuning = run(True)
    assert tuning.startswith("inline")
    assert inline_out == run(False)[0]


@pytest.mark.usefixtures("cheap_enough")
def test_ctrl_c_in_an_inline_call_reaches_the_consumer_and_closes() -> None:
    interrupt = threading.Event()

    def interruptible(x: int) -> int:
        if interrupt.is_set():
            raise KeyboardInterrupt
        return x

    interrupted(builder().pipe(interruptible, name="ctrl_c").build(), interrupt, then_closed=True)


def test_a_source_that_waits_gets_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_inline, "INLINE_MAX", 1.0)  # CPU: cheap whatever the machine
    threads: list[int] = []

    def reads() -> Iterator[int]:
        for x in range(2000):
            time.sleep(0.0001)  # little CPU, much time: a file, a socket
            yield x

    b = ftpipe.PipelineBuilder().add_source(reads()).pipe(calls_in(threads), name="record")
    with b.build() as p:
        assert list(p) == list(range(2000))
        assert p.stats()["record"].tuning.startswith("back on threads: calls took")
    assert threading.get_ident() not in threads[2:], "two slow batches, then threads"


def test_slow_calls_from_the_start_get_threads_after_two() -> None:
    threads: list[int] = []

    def slow(x: int) -> int:
        threads.append(threading.get_ident())
        time.sleep(0.001)
        return x

    with ftpipe.PipelineBuilder().add_source(range(50)).pipe(slow, name="slow").build() as p:
        assert list(p) == list(range(50))
        assert p.stats()["slow"].tuning.startswith("back on threads: calls took")
        assert p.stats()["slow"].items_in == 50
    assert threads[:2] == [threading.get_ident()] * 2
    assert threading.get_ident() not in threads[2:]


def test_calls_over_the_cpu_bound_get_threads_after_the_probe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_inline, "INLINE_MAX", 0.0)  # any CPU at all is too much
    monkeypatch.setattr(_inline, "SLOW", 1.0)
    threads: list[int] = []
    with builder().pipe(calls_in(threads), name="record").build() as pipeline:
        assert list(pipeline) == expected()
        assert pipeline.stats()["record"].tuning.startswith("back on threads: calls cost")
    me = threading.get_ident()
    assert threads[: _inline.PROBE_ITEMS] == [me] * _inline.PROBE_ITEMS
    assert me not in threads[2 * _inline.PROBE_ITEMS :]


@pytest.mark.usefixtures("cheap_enough")
def test_ctrl_c_in_the_source_inline_reaches_the_consumer_at_once() -> None:
    interrupt = threading.Event()

    def source() -> Iterator[int]:
        for x in range(N):
            if interrupt.is_set():
                raise KeyboardInterrupt
            yield x

    interrupted(builder(source()).build(), interrupt, then_closed=False)


def test_an_error_after_the_move_to_threads_names_the_input_from_the_start() -> None:
    """The run on threads numbers its inputs from where the consumer's thread stopped;
    the note counts from the pipeline's first input all the same."""

    def slow_then_bad(x: int) -> int:
        time.sleep(0.001)  # slow: two calls here, then threads
        if x == 10:
            raise ValueError("bad 10")
        return x

    b = ftpipe.PipelineBuilder().add_source(range(20)).pipe(slow_then_bad, name="slow")
    out: list[int] = []
    with b.build() as p, pytest.raises(ValueError, match="bad 10") as caught:
        out.extend(p)
    assert out == list(range(10))
    assert caught.value.__notes__ == ["ftpipe: raised in stage 'slow' on input #10"]
    assert p.stats()["slow"].tuning.startswith("back on threads")
