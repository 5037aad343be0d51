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
from ftpipe.executors import subinterpreters_available

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


def test_async_sources_are_refused() -> None:
    """(ordered=False stages: test_engine_state_unordered.py.)"""

    async def numbers() -> Any:
        for i in range(5):
            yield i

    _refused(
        ftpipe.PipelineBuilder().add_source(numbers()).pipe(cw.info, name="s"),
        r"the source \(async_generator\) is an async iterable",
    )
    builder = ftpipe.PipelineBuilder().add_source(numbers()).pipe(cw.info)
    with pytest.raises(ValueError, match=r"build\(state=...\): the source .* is an async"):
        builder.build(state={"version": 2})


def _variable(source: Any, executor: Any = None, concurrency: int = 3) -> ftpipe.PipelineBuilder:
    """Outputs per input that vary: a generator, skipped failures, lists and their items."""
    return (
        ftpipe.PipelineBuilder(seed=9)
        .add_source(source)
        .pipe(cw.spread, concurrency=concurrency, executor=executor, name="spread")
        .pipe(cw.not_multiple_of_five, concurrency=2, on_error="skip", name="skip")
        .aggregate(3)
        .pipe(cw.seeded, concurrency=concurrency, name="batch")
        .disaggregate()
    )


def _in_pieces(make: Any, cuts: list[int]) -> list[Any]:
    """What the pipelines yield when each stops after ``cuts[i]`` outputs and the next resumes."""
    got: list[Any] = []
    state = None
    for cut in cuts:
        with make().build(state=state) as pipeline:
            got += _take(pipeline, cut)
            state = pipeline.state_dict()
    with make().build(state=state) as pipeline:
        return got + list(pipeline)


def test_generators_mid_expansion_skips_lists_filling_and_disaggregate_resume_anywhere() -> None:
    """A checkpoint after every output: a generator stopped mid-expansion runs its input
    again and the outputs delivered already are dropped; a list still filling is made again."""

    def make() -> ftpipe.PipelineBuilder:
        return _variable(range(60))

    with make().build() as whole:
        full = list(whole)
    kept = sum(x % 4 for x in range(60) if x % 5)  # 0-3 outputs per input; multiples of 5 skipped
    assert len(full) == 2 * -(-kept // 3)  # lists of 3 (the last short), each then with its seed
    for cut in range(len(full) + 1):
        assert _in_pieces(make, [cut]) == full, cut
    assert _in_pieces(make, [5, 0, 17, 1, 1, 20]) == full  # again and again


@pytest.mark.parametrize("executor", ["process", "interpreter"])
def test_variable_pipelines_resume_on_every_executor_kind(executor: str) -> None:
    if executor == "interpreter" and not subinterpreters_available():
        pytest.skip("isolated subinterpreters need CPython 3.13+")

    def make() -> ftpipe.PipelineBuilder:
        return _variable(range(40), executor=executor, concurrency=2)

    with _variable(range(40)).build() as on_threads:
        full = list(on_threads)  # the same outputs and seeds as on threads
    for cuts in ([3], [len(full) // 2, 7], [1, 0, 2]):
        assert _in_pieces(make, cuts) == full


def test_a_source_with_state_dict_resumes_from_its_own_snapshots() -> None:
    with _variable(cw.Counter(80)).build() as whole:
        full = list(whole)
    with _variable(range(80)).build() as from_a_range:
        assert list(from_a_range) == full
    for cut in (0, 1, 30, len(full) - 1, len(full)):
        with _variable(cw.Counter(80)).build() as pipeline:
            head = _take(pipeline, cut)
            state = pipeline.state_dict()
        assert json.loads(json.dumps(state)) == state
        source_state = state["source"]
        assert source_state["state"]["i"] + source_state["skip"] == source_state["position"]
        source = cw.Counter(80)
        with _variable(source).build(state=state) as resumed:
            assert head + list(resumed) == full, cut
        assert source.loads == [source_state["state"]]


def test_a_sequence_checkpoint_does_not_fit_a_source_that_restores_itself() -> None:
    with _variable(range(30)).build() as pipeline:
        _take(pipeline, 4)
        state = pipeline.state_dict()
    with pytest.raises(ValueError, match="the checkpoint is of a sequence source"):
        _variable(cw.Counter(30)).build(state=state)


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


def test_a_checkpoint_after_close_counts_only_what_the_consumer_had() -> None:
    """The sink hands outputs over in batches; those not yet taken when the pipeline
    closes were never the consumer's, so a checkpoint after close() resumes at them."""
    with _variable(range(60)).build() as whole:
        full = list(whole)
    pipeline = _variable(range(60)).build()
    head = _take(pipeline, 3)
    pipeline.close()
    state = pipeline.state_dict()
    assert state["consumed"] == 3
    assert head + _rest(_variable(range(60)), state) == full


class _Dataset:
    """A dataset with ``__len__``, ``__getitem__`` and ``__iter__``, not a ``Sequence``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Any:
        return (self[i] for i in range(self.n))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return i


def test_a_dataset_with_len_and_getitem_resumes_like_a_sequence() -> None:
    with _variable(_Dataset(50)).build() as whole:
        full = list(whole)
    with _variable(range(50)).build() as from_a_range:
        assert list(from_a_range) == full
    with _variable(_Dataset(50)).build() as pipeline:
        head = _take(pipeline, 11)
        state = pipeline.state_dict()
    assert "state" not in state["source"]  # sliced, not restored
    assert head + _rest(_variable(_Dataset(50)), state) == full
    _refused(
        ftpipe.PipelineBuilder().add_source({1: 2, 3: 4}).pipe(cw.info, name="s"),
        r"the source \(dict\) is not a sequence",
    )
