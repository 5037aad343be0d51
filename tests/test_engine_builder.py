"""PipelineBuilder validation: bad input fails at build time, naming the stage and value."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import pytest

import ftpipe
from ftpipe._engine import FnKind, StageKind


def double(x: int) -> int:
    return 2 * x


def builder() -> ftpipe.PipelineBuilder:
    return ftpipe.PipelineBuilder().add_source(range(3))


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"concurrency": 0}, ValueError, ["concurrency", "0"]),
        ({"concurrency": -2}, ValueError, ["concurrency", "-2"]),
        ({"concurrency": "4"}, TypeError, ["concurrency", "'4'"]),
        ({"concurrency": 2.5}, TypeError, ["concurrency", "2.5"]),
        ({"concurrency": True}, TypeError, ["concurrency"]),
        ({"on_error": "ignore"}, ValueError, ["on_error", "'ignore'"]),
        ({"on_error": "skip", "max_failures": -1}, ValueError, ["max_failures", "-1"]),
        ({"max_failures": 3}, ValueError, ["max_failures", "skip"]),
        ({"retries": -1}, ValueError, ["retries", "-1"]),
        ({"retries": "1"}, TypeError, ["retries"]),
        ({"executor": "gpu"}, ValueError, ["unknown executor", "'gpu'", "thread"]),
        ({"executor": 3}, TypeError, ["executor", "int"]),
        ({"executor": object()}, TypeError, ["executor", "object"]),
        ({"buffer_size": 0}, ValueError, ["buffer_size", "0"]),
        ({"ordered": "yes"}, TypeError, ["ordered", "'yes'"]),
        ({"name": ""}, TypeError, ["name"]),
    ],
)
def test_pipe_rejects_bad_arguments_naming_stage_and_value(kwargs, exc, words):
    kwargs = dict(kwargs)  # the parameter is shared by every thread under pytest-run-parallel
    with pytest.raises(exc) as info:
        builder().pipe(double, name=kwargs.pop("name", "dbl"), **kwargs)
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    if "name" not in kwargs:
        assert "dbl" in message or "name" in message


def test_default_stage_name_is_index_and_function():
    with pytest.raises(ValueError, match=r"'0:double'.*concurrency"):
        builder().pipe(double, concurrency=0)


def test_non_callable_fn():
    with pytest.raises(TypeError, match=r"fn must be callable.*int 42"):
        builder().pipe(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("source", [42, None, 3.5, "abc", b"xyz"])
def test_non_iterable_source(source):
    with pytest.raises(TypeError, match="source must be an iterable"):
        ftpipe.PipelineBuilder().add_source(source)


def test_second_source_and_missing_source():
    with pytest.raises(ValueError, match="already has a source"):
        builder().add_source([1])
    with pytest.raises(ValueError, match="no source"):
        ftpipe.PipelineBuilder().pipe(double).build()


@pytest.mark.parametrize(
    ("n", "exc"), [(0, ValueError), (-1, ValueError), ("3", TypeError), (1.0, TypeError)]
)
def test_aggregate_size(n, exc):
    with pytest.raises(exc, match="aggregate size"):
        builder().aggregate(n)


@pytest.mark.parametrize(("size", "exc"), [(0, ValueError), (-5, ValueError), ("8", TypeError)])
def test_sink_buffer_size(size, exc):
    with pytest.raises(exc, match="buffer_size"):
        builder().add_sink(buffer_size=size)


def _sink_capacity(b: ftpipe.PipelineBuilder) -> int:
    pipeline = b.build()
    with pipeline:
        list(pipeline)
    return pipeline.stats().stages[-1].buffer_capacity


def test_the_last_stages_buffer_size_is_the_sinks():
    """``buffer_size`` on the last stage was silently replaced by the sink's (64).

    _pipeline.py sized the last stage's output channel with ``sink_buffer_size``
    alone, so ``.pipe(f, buffer_size=8)`` at the end of a pipeline got 64 and
    ``.pipe(f, buffer_size=8).add_sink(buffer_size=4)`` quietly got 4.
    """
    assert builder().pipe(double, buffer_size=8).config().sink_buffer_size == 8
    assert _sink_capacity(builder().pipe(double, buffer_size=8)) == 8
    both = builder().pipe(double, buffer_size=8).add_sink(buffer_size=8)
    assert _sink_capacity(both) == 8
    with pytest.raises(
        ValueError, match=r"stage 'last': buffer_size=8 and add_sink\(buffer_size=4\)"
    ):
        builder().pipe(double, buffer_size=8, name="last").add_sink(buffer_size=4).build()


def test_the_sink_size_applies_when_the_last_stage_gives_none():
    assert _sink_capacity(builder().pipe(double).add_sink(buffer_size=4)) == 4
    assert _sink_capacity(builder().pipe(double)) == 64
    # An earlier stage's buffer_size is its own: the sink keeps its size.
    assert _sink_capacity(builder().pipe(double, buffer_size=8).pipe(double)) == 64
    assert builder().pipe(double, buffer_size=8).aggregate(2).config().sink_buffer_size == 64


def test_duplicate_stage_names():
    with pytest.raises(ValueError, match="'x' is used twice"):
        builder().pipe(double, name="x").pipe(double, name="x")


def test_config_is_frozen_and_classifies_functions():
    def gen(x):
        yield x

    async def coro(x):
        return x

    async def agen(x):
        yield x

    config = (
        builder()
        .pipe(double, concurrency=3, executor="thread")
        .pipe(gen)
        .pipe(coro)
        .pipe(agen)
        .pipe(functools.partial(gen))
        .aggregate(2, drop_last=True)
        .disaggregate()
        .config()
    )
    kinds = [s.fn_kind for s in config.stages[:5]]
    assert kinds == [
        FnKind.FUNCTION,
        FnKind.GENERATOR,
        FnKind.ASYNC,
        FnKind.ASYNC_GENERATOR,
        FnKind.GENERATOR,
    ]
    assert config.stages[0].executor is None and config.stages[0].executor_name == "thread"
    assert config.stages[5].kind is StageKind.AGGREGATE and config.stages[5].drop_last
    assert config.stages[6].kind is StageKind.DISAGGREGATE
    with pytest.raises(AttributeError):
        config.stages[0].concurrency = 5  # type: ignore[misc]


def test_user_executor_is_accepted_and_named():
    with ThreadPoolExecutor(1) as pool:
        stage = builder().pipe(double, executor=pool).config().stages[0]
        assert stage.executor is pool
        assert stage.executor_name == "ThreadPoolExecutor"
