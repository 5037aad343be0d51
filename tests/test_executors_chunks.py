"""Chunked calls: many inputs per round trip, one outcome per input, on every executor kind.

Executor stages send adaptive chunks of inputs (``call_chunk``) and
``Executor.map(chunksize=...)`` sends fixed ones; whatever the chunk, a failure
belongs to its own input, outputs keep input order, and the error policy
(retries, skip, raise) applies per input.
"""

from __future__ import annotations

import functools
import gc
import operator
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import ftpipe
import test_executors_workloads as w
from ftpipe.executors import BrokenWorkerError, RemoteTraceback, subinterpreters_available

needs_subinterpreters = pytest.mark.skipif(
    not subinterpreters_available(), reason="isolated subinterpreters need CPython 3.13+"
)

KINDS = [
    pytest.param("process", id="process"),
    pytest.param("interpreter", id="interpreter", marks=needs_subinterpreters),
]
EXECUTOR_CLASSES = [
    pytest.param(ftpipe.ProcessExecutor, id="ProcessExecutor"),
    pytest.param(ftpipe.InterpreterExecutor, id="InterpreterExecutor", marks=needs_subinterpreters),
    pytest.param(ftpipe.ThreadExecutor, id="ThreadExecutor"),
]


def _run(builder: ftpipe.PipelineBuilder) -> list[Any]:
    with builder.build() as pipeline:
        return list(pipeline)


# -- Executor.map(chunksize=...) ---------------------------------------------------------


@pytest.mark.parametrize("cls", EXECUTOR_CLASSES)
def test_map_chunksize_keeps_order_and_raises_at_the_failing_input(cls: Any) -> None:
    with cls(2) as ex:
        assert list(ex.map(w.square, range(23), chunksize=5)) == [x * x for x in range(23)]
        # Several iterables: zipped, stopping at the shortest, as the stdlib does.
        assert list(ex.map(operator.add, range(7), range(10, 20), chunksize=3)) == [
            a + b for a, b in zip(range(7), range(10, 17), strict=True)
        ]
        results = ex.map(operator.truediv, [1, 2, 3, 4], [1, 1, 0, 1], chunksize=4)
        assert next(results) == 1.0
        assert next(results) == 2.0
        with pytest.raises(ZeroDivisionError) as info:
            next(results)
        if cls is not ftpipe.ThreadExecutor:
            assert isinstance(info.value.__cause__, RemoteTraceback)
            assert "truediv" in str(info.value.__cause__) or "division" in str(info.value.__cause__)


@pytest.mark.parametrize("cls", EXECUTOR_CLASSES)
@pytest.mark.parametrize(
    ("bad", "error"),
    [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError), ("3", TypeError)],
)
def test_map_rejects_a_bad_chunksize(cls: Any, bad: Any, error: type[Exception]) -> None:
    with cls(1) as ex, pytest.raises(error, match="chunksize"):
        ex.map(w.square, range(3), chunksize=bad)


def test_map_chunksize_sends_a_chunk_per_call() -> None:
    # One worker: every input of a chunk is served by one call, so the
    # executor's own counting of calls (submits) shows the chunking.
    with ftpipe.ProcessExecutor(1) as ex:
        submitted = []
        submit = ex.submit

        def counting_submit(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            submitted.append(fn)
            return submit(fn, *args, **kwargs)

        ex.submit = counting_submit  # type: ignore[method-assign]
        assert list(ex.map(w.identity, range(100), chunksize=25)) == list(range(100))
        assert len(submitted) == 4


# -- pipelines: one outcome per input ------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_failure_inside_a_chunk_names_its_input_and_keeps_earlier_outputs(kind: str) -> None:
    n, bad = 400, 301
    got: list[int] = []
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(n))
        .pipe(functools.partial(w.fail_on, bad), concurrency=2, executor=kind, name="f")
        .add_sink(buffer_size=64)
        .build()
    )
    with pytest.raises(ValueError) as info, pipeline:
        for x in pipeline:
            got.append(x)
    assert got == list(range(bad))
    assert any(f"input #{bad}" in note for note in getattr(info.value, "__notes__", []))
    assert isinstance(info.value.__cause__, RemoteTraceback)


@pytest.mark.parametrize("kind", KINDS)
def test_skip_drops_exactly_the_failing_inputs(kind: str) -> None:
    bad = {3, 64, 65, 199}

    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(300))
        .pipe(w.square, concurrency=2, executor=kind)
        .pipe(
            functools.partial(w.fail_on, -1),  # never fails: a second executor stage
            concurrency=1,
            executor=kind,
        )
        .add_sink()
    )
    assert _run(pipeline) == [x * x for x in range(300)]

    skipping = (
        ftpipe.PipelineBuilder()
        .add_source(range(300))
        .pipe(_FailOnSet(bad), concurrency=2, executor="process", on_error="skip", name="s")
        .add_sink()
        .build()
    )
    with skipping:
        assert list(skipping) == [x for x in range(300) if x not in bad]
    (stage,) = [s for s in skipping.stats().stages if s.name == "s"]
    assert stage.failures == len(bad)


class _FailOnSet:
    """Fails for the inputs in ``bad`` (a picklable callable object)."""

    def __init__(self, bad: set[int]) -> None:
        self.bad = bad

    def __call__(self, x: int) -> int:
        if x in self.bad:
            raise KeyError(x)
        return x


def test_retries_apply_per_input_inside_chunks(tmp_path: Any) -> None:
    fn = functools.partial(w.fail_first_time, str(tmp_path))
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(50))
        .pipe(fn, concurrency=2, executor="process", retries=1, name="flaky")
        .add_sink()
        .build()
    )
    with pipeline:
        assert list(pipeline) == list(range(50))
    (stage,) = [s for s in pipeline.stats().stages if s.name == "flaky"]
    assert stage.retries == 50
    assert stage.failures == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_result_that_cannot_travel_fails_only_its_input(kind: str) -> None:
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(200))
        .pipe(
            functools.partial(w.unpicklable_if, 150),
            concurrency=1,
            executor=kind,
            on_error="skip",
            name="u",
        )
        .add_sink()
        .build()
    )
    with pipeline:
        assert list(pipeline) == [x for x in range(200) if x != 150]
    (stage,) = [s for s in pipeline.stats().stages if s.name == "u"]
    assert stage.failures == 1


def test_an_argument_that_cannot_travel_fails_only_its_input() -> None:
    import threading

    items: list[Any] = list(range(100))
    items[70] = threading.Lock()
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(items)
        .pipe(w.identity, concurrency=1, executor="process", name="id")
        .add_sink()
        .build()
    )
    got: list[Any] = []
    with pytest.raises(TypeError, match="cannot send") as info, pipeline:
        for x in pipeline:
            got.append(x)
    assert got == list(range(70))
    assert any("input #70" in note for note in info.value.__notes__)


@pytest.mark.parametrize("kind", KINDS)
def test_generator_stages_flatten_chunks_in_order(kind: str) -> None:
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(300))
        .pipe(w.explode_gen, concurrency=2, executor=kind)
        .add_sink()
    )
    assert _run(pipeline) == [y for x in range(300) for y in w.explode(x)]


@pytest.mark.parametrize("kind", KINDS)
def test_a_failing_generator_on_a_worker_raises_its_own_error(kind: str) -> None:
    # Subinterpreters run generator chunks through ftpipe's call_chunk, not their
    # bootstrap's loop: the failures must come back packed all the same.
    builder = ftpipe.PipelineBuilder().add_source(range(5)).pipe(w.fragile_gen, executor=kind)
    with pytest.raises(KeyError, match="three") as info:
        _run(builder)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert any("input #3" in note for note in info.value.__notes__)
    skip = ftpipe.PipelineBuilder().add_source(range(5))
    assert _run(skip.pipe(w.fragile_gen, executor=kind, on_error="skip")) == [0, 1, 2, 4]


def test_a_dead_worker_names_the_inputs_lost_with_it() -> None:
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(500))
        .pipe(functools.partial(w.kill_self_on, 400), concurrency=1, executor="process", name="k")
        .add_sink()
        .build()
    )
    got: list[int] = []
    with pytest.raises(BrokenWorkerError) as info, pipeline:
        for x in pipeline:
            got.append(x)
    notes = " ".join(info.value.__notes__)
    assert "stage 'k'" in notes
    # Everything before the first lost input arrived, in order, and nothing after it.
    # The note names that input, at or before the killing input 400: the chunk that
    # held 400, or one queued beside it (submitting threads race), or one refused by
    # the broken executor; a chunk's note names its whole range.
    first = int(notes.split("input #")[1].split()[0])
    assert got == list(range(first))
    assert first <= 400
    if first < 400:
        assert "were lost with the worker" in notes or "never ran" in notes


def test_busy_time_counts_each_call_once() -> None:
    # Two submitting threads per worker must not double the stage's busy time.
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source([0.02] * 20)
        .pipe(w.timed_sleep, concurrency=2, executor="process", name="sleepy")
        .add_sink()
        .build()
    )
    with pipeline:
        took = sum(pipeline)
    (stage,) = [s for s in pipeline.stats().stages if s.name == "sleepy"]
    assert took <= stage.busy_s <= took * 1.1 + 0.05


def test_in_process_executors_keep_the_original_traceback() -> None:
    with ThreadPoolExecutor(2) as pool:
        pipeline = (
            ftpipe.PipelineBuilder()
            .add_source(range(10))
            .pipe(functools.partial(w.fail_on, 5), concurrency=2, executor=pool)
            .add_sink()
            .build()
        )
        with pytest.raises(ValueError) as info, pipeline:
            list(pipeline)
    assert not isinstance(info.value.__cause__, RemoteTraceback)
    assert info.value.__traceback__ is not None
    frames = []
    tb = info.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "fail_on" in frames


# -- workers do not keep results -------------------------------------------------------------


def _make_payload() -> w.Payload:
    return w.Payload()


def test_a_worker_does_not_keep_its_last_result() -> None:
    with ftpipe.ThreadExecutor(1) as ex:
        result = ex.submit(_make_payload).result()
        ref = weakref.ref(result)
        del result
        gc.collect()
        assert ref() is None, "the worker thread still holds its last result"
