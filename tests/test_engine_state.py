"""Checkpoints: ``Pipeline.state_dict()`` and ``PipelineBuilder.build(state=...)``.

A resumed pipeline yields exactly what the checkpointed one would have yielded
next, item seeds included; what cannot be resumed is refused with the reason.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import context_workloads as cw
import ftpipe

N = 103


def _builder(executor: Any = None, seed: int | None = 5, **more: Any) -> ftpipe.PipelineBuilder:
    return (
        ftpipe.PipelineBuilder(seed=seed, **more)
        .add_source(range(N))
        .pipe(cw.augment, concurrency=4, executor=executor, name="aug")
        .aggregate(4)
        .pipe(cw.seeded, concurrency=2, name="batch")
    )


def _take(pipeline: ftpipe.Pipeline, n: int) -> list[Any]:
    it = iter(pipeline)
    return [next(it) for _ in range(n)]


def _rest(builder: ftpipe.PipelineBuilder, state: dict[str, Any]) -> list[Any]:
    with builder.build(state=state) as pipeline:
        return list(pipeline)


@pytest.mark.parametrize("executor", [None, "process"])
@pytest.mark.parametrize("taken", [0, 1, 7, 26])
def test_a_resumed_pipeline_yields_what_the_old_one_would_have(executor: Any, taken: int) -> None:
    with _builder(executor).build() as whole:
        full = list(whole)
    assert len(full) == 26  # 103 items in lists of 4, the last one short
    with _builder(executor).build() as pipeline:
        head = _take(pipeline, taken)
        state = pipeline.state_dict()
    assert json.loads(json.dumps(state)) == state  # plain data: save it anywhere
    assert head + _rest(_builder(executor), state) == full


def test_a_resumed_pipeline_can_be_checkpointed_again() -> None:
    with _builder().build() as whole:
        full = list(whole)
    with _builder().build() as first:
        head = _take(first, 3)
        state = first.state_dict()
    with _builder().build(state=state) as second:
        middle = _take(second, 10)
        again = second.state_dict()
    assert again["consumed"] == 13
    assert head + middle + _rest(_builder(), again) == full


def test_async_stages_resume_with_their_seeds() -> None:
    def build() -> ftpipe.PipelineBuilder:
        return (
            ftpipe.PipelineBuilder(seed=2)
            .add_source(list(range(40)))
            .pipe(cw.async_seeded, concurrency=3, name="fetch")
        )

    with build().build() as whole:
        full = list(whole)
    with build().build() as pipeline:
        head = _take(pipeline, 11)
        state = pipeline.state_dict()
    assert head + _rest(build(), state) == full


def _refused(builder: ftpipe.PipelineBuilder, match: str) -> None:
    with builder.build() as pipeline:
        _take(pipeline, 1)
        with pytest.raises(ValueError, match=match):
            pipeline.state_dict()


def test_a_generator_source_is_refused() -> None:
    _refused(
        ftpipe.PipelineBuilder().add_source(x for x in range(5)).pipe(cw.info, name="s"),
        r"state_dict\(\): the source \(generator\) is not a sequence",
    )


@pytest.mark.parametrize(
    ("pipe", "match"),
    [
        ({"fn": cw.odd_only}, "is a generator function"),
        ({"fn": cw.info, "ordered": False}, "has ordered=False"),
        ({"fn": cw.info, "on_error": "skip"}, "has on_error='skip'"),
    ],
)
def test_stages_whose_outputs_cannot_be_counted_back_are_refused(
    pipe: dict[str, Any], match: str
) -> None:
    settings = dict(pipe)  # the parameter is shared by parallel runs: leave it as it is
    fn = settings.pop("fn")
    _refused(ftpipe.PipelineBuilder().add_source(range(9)).pipe(fn, name="s", **settings), match)


def test_disaggregate_is_refused_at_build_time_too() -> None:
    builder = ftpipe.PipelineBuilder().add_source(range(9)).aggregate(3).disaggregate()
    state = {
        "version": 1,
        "consumed": 1,
        "seed": None,
        "epoch": 0,
        "stages": ["0:aggregate(3)", "1:disaggregate"],
    }
    with pytest.raises(ValueError, match=r"build\(state=...\): stage '1:disaggregate'"):
        builder.build(state=state)


def test_a_checkpoint_must_fit_the_pipeline() -> None:
    with _builder().build() as pipeline:
        _take(pipeline, 2)
        state = pipeline.state_dict()
    with pytest.raises(TypeError, match="expected a dict from Pipeline.state_dict"):
        _builder().build(state=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epoch=0; this builder has seed=5, epoch=1"):
        _builder(epoch=1).build(state=state)
    with pytest.raises(ValueError, match="seed=5, epoch=0; this builder has seed=None"):
        _builder(seed=None).build(state=state)
    other = ftpipe.PipelineBuilder(seed=5).add_source(range(N)).pipe(cw.seeded, name="x")
    with pytest.raises(ValueError, match="the checkpoint is of stages"):
        other.build(state=state)
    with pytest.raises(ValueError, match="'consumed' must be an int >= 0"):
        _builder().build(state={**state, "consumed": -1})


def test_a_checkpoint_at_the_end_resumes_to_nothing() -> None:
    with _builder().build() as pipeline:
        list(pipeline)
        state = pipeline.state_dict()
    assert state["consumed"] == 26
    assert _rest(_builder(), state) == []
