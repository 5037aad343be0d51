"""Pipeline semantics: order, completion order, function kinds, errors, retries, stats."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import pytest

import ftpipe


def jitter(x: int) -> int:
    # Uneven latency: later items often finish first.
    time.sleep(random.random() * 0.002)
    return x


def run(builder: ftpipe.PipelineBuilder) -> list:
    with builder.build() as pipeline:
        return list(pipeline)


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_ordered_output_keeps_source_order_under_uneven_latency(concurrency):
    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(300))
        .pipe(jitter, concurrency=concurrency)
        .pipe(str)
    )
    assert run(b) == [str(i) for i in range(300)]


def test_unordered_output_is_every_item_once():
    b = ftpipe.PipelineBuilder().add_source(range(300)).pipe(jitter, concurrency=6, ordered=False)
    out = run(b)
    assert sorted(out) == list(range(300))


def test_unordered_yields_in_completion_order():
    gate = threading.Event()
    waited: list[bool] = []

    def slow_first(x):
        if x == 0:
            # Item 0 finishes only once the consumer has seen item 5, so in completion
            # order it comes last.  Generous: under the 4-thread parallel run on 2 cores
            # the other worker can take seconds to get going.  It must get there, though.
            waited.append(gate.wait(60))
        return x

    b = ftpipe.PipelineBuilder().add_source(range(6)).pipe(slow_first, concurrency=2, ordered=False)
    out = []
    with b.build() as pipeline:
        for x in pipeline:
            out.append(x)
            if x == 5:
                gate.set()  # the consumer saw 5 (set it in the function: 0 could overtake)
    assert waited == [True], "the second worker never reached the last item"
    assert sorted(out) == list(range(6)) and out[-1] == 0


def test_empty_source_and_no_stages():
    assert run(ftpipe.PipelineBuilder().add_source([])) == []
    assert run(ftpipe.PipelineBuilder().add_source([]).pipe(str, concurrency=4)) == []
    assert run(ftpipe.PipelineBuilder().add_source(iter("abc"))) == ["a", "b", "c"]


def test_generator_stage_emits_zero_or_more_in_order():
    def repeat(x):
        yield from [x] * (x % 3)

    b = ftpipe.PipelineBuilder().add_source(range(50)).pipe(repeat, concurrency=4)
    assert run(b) == [x for x in range(50) for _ in range(x % 3)]


def test_generator_yielding_more_than_buffer_streams_in_order():
    def many(x):
        yield from range(x * 100, x * 100 + 500)

    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(6))
        .pipe(many, concurrency=3, buffer_size=4)  # the last stage's buffer is the sink
    )
    assert run(b) == [i for x in range(6) for i in range(x * 100, x * 100 + 500)]


def test_async_stage_runs_coroutines_concurrently_in_order():
    in_flight = 0
    peak = 0

    async def fetch(x):
        nonlocal in_flight, peak  # only touched from the stage's one event-loop thread
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01 * ((x * 7) % 3))
        in_flight -= 1
        return -x

    b = ftpipe.PipelineBuilder().add_source(range(40)).pipe(fetch, concurrency=8)
    assert run(b) == [-x for x in range(40)]
    assert 2 <= peak <= 8


def test_async_generator_and_async_source():
    async def source():
        for i in range(10):
            await asyncio.sleep(0)
            yield i

    async def twice(x):
        yield x
        yield x

    b = ftpipe.PipelineBuilder().add_source(source()).pipe(twice, concurrency=3)
    assert run(b) == [x for x in range(10) for _ in range(2)]


def test_aggregate_and_disaggregate():
    b = ftpipe.PipelineBuilder().add_source(range(10)).aggregate(4)
    assert run(b) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    b = ftpipe.PipelineBuilder().add_source(range(10)).aggregate(4, drop_last=True)
    assert run(b) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(10))
        .aggregate(3)
        .pipe(sum)
        .aggregate(2)
        .disaggregate()
    )
    assert run(b) == [3, 12, 21, 9]


class Boom(Exception):
    pass


def explode_on(bad):
    def fn(x):
        if x in bad:
            raise Boom(f"bad item {x}")
        return x

    return fn


def test_raise_reraises_original_exception_with_stage_note_and_traceback():
    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(100))
        .pipe(explode_on({42}), concurrency=3, name="parse")
    )
    pipeline = b.build()
    got = []
    with pytest.raises(Boom, match="bad item 42") as info, pipeline:
        for x in pipeline:
            got.append(x)
    notes = info.value.__notes__
    assert any("'parse'" in n and "#42" in n for n in notes), notes
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "fn" in frames  # the original frame where it was raised is kept
    assert got == list(range(len(got))) and 42 not in got


def test_source_exception_propagates_with_note():
    def source():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone") as info:
        run(ftpipe.PipelineBuilder().add_source(source()).pipe(str))
    assert any("source" in n for n in info.value.__notes__)


def test_skip_drops_failures_and_counts_them():
    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(50))
        .pipe(explode_on({3, 17, 18}), concurrency=4, on_error="skip", name="s")
    )
    pipeline = b.build()
    with pipeline:
        out = list(pipeline)
    assert out == [x for x in range(50) if x not in {3, 17, 18}]
    assert pipeline.stats()["s"].failures == 3


def test_skip_raises_once_max_failures_exceeded():
    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(50))
        .pipe(explode_on({3, 17, 18, 30}), on_error="skip", max_failures=2, name="s")
    )
    with pytest.raises(Boom, match="bad item 18") as info:
        run(b)
    assert any("max_failures=2" in n for n in info.value.__notes__)
    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(50))
        .pipe(explode_on({3, 17}), on_error="skip", max_failures=2)
    )
    assert len(run(b)) == 48


def test_skip_in_generator_and_async_stages():
    def gen(x):
        if x == 2:
            raise Boom
        yield x

    async def coro(x):
        if x == 4:
            raise Boom
        return x

    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(8))
        .pipe(gen, on_error="skip")
        .pipe(coro, concurrency=3, on_error="skip")
    )
    assert run(b) == [0, 1, 3, 5, 6, 7]


def test_retries_then_succeed_or_fail():
    attempts: dict[int, int] = {}
    lock = threading.Lock()

    def flaky(x):
        with lock:
            attempts[x] = attempts.get(x, 0) + 1
            n = attempts[x]
        if x % 5 == 0 and n < 3:
            raise Boom(x)
        return x

    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(20))
        .pipe(flaky, concurrency=3, retries=2, name="f")
    )
    pipeline = b.build()
    with pipeline:
        assert list(pipeline) == list(range(20))
    assert pipeline.stats()["f"].retries == 8
    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(20))
        .pipe(explode_on({7}), retries=3, on_error="skip", name="g")
    )
    pipeline = b.build()
    with pipeline:
        assert list(pipeline) == [x for x in range(20) if x != 7]
    assert pipeline.stats()["g"].retries == 3 and pipeline.stats()["g"].failures == 1


@pytest.mark.parametrize("kind", ["async", "async-generator"])
def test_async_stage_retries_then_succeed_or_fail(kind):
    attempts: dict[int, int] = {}  # only touched from the stage's one event-loop thread

    def attempt(x: int) -> None:
        attempts[x] = attempts.get(x, 0) + 1
        if x % 5 == 0 and attempts[x] < 3:
            raise Boom(x)

    async def flaky(x):
        await asyncio.sleep(0)
        attempt(x)
        return x

    async def flaky_gen(x):
        yield (x, "a")  # a failed attempt's outputs must not leak
        await asyncio.sleep(0)
        attempt(x)
        yield (x, "b")

    fn = flaky if kind == "async" else flaky_gen
    expected = list(range(20)) if kind == "async" else [(x, t) for x in range(20) for t in "ab"]
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(20))
        .pipe(fn, concurrency=4, retries=2, name="f")
        .build()
    )
    with pipeline:
        assert list(pipeline) == expected
    assert pipeline.stats()["f"].retries == 8 and pipeline.stats()["f"].failures == 0
    assert attempts == {x: 3 if x % 5 == 0 else 1 for x in range(20)}

    # One retry is not enough for inputs 0, 5, 10, 15: input 0 fails for good.
    attempts.clear()
    b = ftpipe.PipelineBuilder().add_source(range(20)).pipe(fn, concurrency=4, retries=1, name="g")
    with pytest.raises(Boom) as info, b.build() as pipeline:
        list(pipeline)
    assert attempts[0] == 2  # the first attempt and one retry
    assert any("'g'" in n and "#0" in n for n in info.value.__notes__)


def test_generator_stage_retries_keep_only_the_successful_attempts_outputs():
    attempts: dict[int, int] = {}
    lock = threading.Lock()

    def flaky_pairs(x):
        with lock:
            attempts[x] = attempts.get(x, 0) + 1
            n = attempts[x]
        yield (x, "a")
        if x % 4 == 0 and n < 3:
            raise Boom(x)  # after one output: a failed attempt's outputs must not leak
        yield (x, "b")

    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(12))
        .pipe(flaky_pairs, concurrency=2, retries=2, name="pairs")
        .build()
    )
    with pipeline:
        assert list(pipeline) == [(x, t) for x in range(12) for t in "ab"]
    assert pipeline.stats()["pairs"].retries == 6

    def always_fails_on_5(x):
        yield x
        if x == 5:
            raise Boom(x)

    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(8))
        .pipe(always_fails_on_5, retries=1, on_error="skip", name="g")
        .build()
    )
    with pipeline:
        assert list(pipeline) == [0, 1, 2, 3, 4, 6, 7]
    assert pipeline.stats()["g"].retries == 1 and pipeline.stats()["g"].failures == 1


def test_user_executor_runs_stage_and_is_not_shut_down():
    with ThreadPoolExecutor(2) as pool:
        b = (
            ftpipe.PipelineBuilder()
            .add_source(range(30))
            .pipe(jitter, executor=pool, concurrency=2)
        )
        assert run(b) == list(range(30))
        assert pool.submit(lambda: 7).result() == 7  # still usable


def test_pipeline_runs_once():
    pipeline = ftpipe.PipelineBuilder().add_source(range(3)).build()
    assert list(pipeline) == [0, 1, 2]
    with pytest.raises(RuntimeError, match="runs once|already ran"):
        list(pipeline)
    closed = ftpipe.PipelineBuilder().add_source(range(3)).build()
    with closed:
        pass
    with pytest.raises(RuntimeError, match="already ran"):
        iter(closed)


def test_backpressure_source_does_not_run_far_ahead():
    produced = 0

    def source():
        nonlocal produced  # written only by the source thread
        for i in range(10_000):
            produced = i + 1
            yield i

    b = (
        ftpipe.PipelineBuilder()
        .add_source(source())
        .pipe(str, buffer_size=8)
        .pipe(str)
        .add_sink(buffer_size=4)
    )
    with b.build() as pipeline:
        it = iter(pipeline)
        next(it)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # test-side observation window only
            time.sleep(0.05)
        # buffers: source out (64) + stage 0 out (8) + sink (4) + batches in hand
        assert produced < 250, produced


def test_stats_snapshot_names_stages_and_bottleneck():
    def slow(x):
        time.sleep(0.002)
        return x

    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(100))
        .pipe(str, name="fast")
        .pipe(slow, name="slow")
    )
    pipeline = b.build()
    with pipeline:
        out = list(pipeline)
        stats = pipeline.stats()
    assert len(out) == 100
    names = [s.name for s in stats.stages]
    assert names == ["source", "fast", "slow"]
    assert stats["fast"].items_in == 100 and stats["slow"].items_out == 100
    assert stats.bottleneck == "slow"
    assert stats["slow"].busy_s >= 0.15
    text = str(stats)
    assert "slow *" in text and "bottleneck: slow" in text
    with pytest.raises(KeyError, match="no stage named"):
        stats["nope"]
    with pytest.raises(AttributeError):
        stats.bottleneck = "x"  # type: ignore[misc]


def test_stats_from_another_thread_while_running():
    snapshots = []
    gate = threading.Event()

    def gated(x):
        if x == 50:
            gate.wait(5)
        return x

    b = ftpipe.PipelineBuilder().add_source(range(100)).pipe(gated, name="g")
    with b.build() as pipeline:
        it = iter(pipeline)
        first = [next(it) for _ in range(10)]
        t = threading.Thread(target=lambda: snapshots.append(pipeline.stats()))
        t.start()
        t.join(5)
        gate.set()
        rest = list(it)
    assert first + rest == list(range(100))
    assert snapshots and snapshots[0]["g"].items_in >= 10


def test_several_consumer_threads_share_the_output_exactly_once():
    pipeline = ftpipe.PipelineBuilder().add_source(range(5000)).pipe(str, concurrency=2).build()
    results: list[list[str]] = [[] for _ in range(4)]
    started = threading.Barrier(4, timeout=10)

    def consume(k):
        it = iter(pipeline)  # before anyone can drain it: iterating a finished pipeline is an error
        started.wait()
        for x in it:
            results[k].append(x)

    with pipeline:
        threads = [threading.Thread(target=consume, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert sorted(int(x) for r in results for x in r) == list(range(5000))
