"""Checkpoints of pipelines with an ``ordered=False`` stage: nothing lost, nothing repeated.

Outputs come in completion order, so a resumed run cannot repeat the order; what
it must repeat is the multiset of outputs, each with its item seed.
"""

from __future__ import annotations

from typing import Any

import pytest

import context_workloads as cw
import ftpipe
from ftpipe._engine._channel import Channel, EndOfStream
from ftpipe._engine._ledger import Lineage
from ftpipe.executors import subinterpreters_available


def _first(executor: Any = None) -> ftpipe.PipelineBuilder:
    return (
        ftpipe.PipelineBuilder(seed=4)
        .add_source(range(90))
        .pipe(cw.late_seeded, concurrency=4, executor=executor, ordered=False, name="late")
    )


def _tagged(x: Any) -> tuple[Any, str]:
    return x, "after"  # no item seed: after an ordered=False stage, positions follow completion


SHAPES = {
    # the first stage, on threads: the source's channel skips what was done
    "first": lambda: _first(),
    # an async stage after an ordered one: one put per input
    "async": lambda: (
        ftpipe.PipelineBuilder(seed=4)
        .add_source(list(range(90)))
        .pipe(cw.seeded, name="before")
        .pipe(cw.async_late_seeded, concurrency=5, ordered=False, name="late")
    ),
    # after a generator (its outputs dropped by number) and before an ordered stage
    "between": lambda: (
        ftpipe.PipelineBuilder(seed=4)
        .add_source(range(60))
        .pipe(cw.spread, name="spread")
        .pipe(cw.late_seeded, concurrency=4, ordered=False, name="late")
        .pipe(_tagged, concurrency=2, name="after")
    ),
    # lists made after it, in completion order
    "aggregate": lambda: _first().aggregate(4).pipe(cw.seeded, name="batch"),
    "process": lambda: (
        ftpipe.PipelineBuilder(seed=4)
        .add_source(range(50))
        .pipe(cw.spread, name="spread")
        .pipe(cw.late_seeded, concurrency=2, executor="process", ordered=False, name="late")
    ),
}


def _flat(outputs: list[Any]) -> list[Any]:
    """Lists taken apart (aggregate: their membership follows completion order)."""
    flat: list[Any] = []
    for out in outputs:
        if isinstance(out, tuple) and isinstance(out[0], list):
            flat += out[0]
        else:
            flat.append(out)
    return sorted(flat, key=repr)


def _in_pieces(make: Any, cuts: list[int]) -> list[Any]:
    got: list[Any] = []
    state = None
    for cut in cuts:
        with make().build(state=state) as pipeline:
            it = iter(pipeline)
            got += [next(it) for _ in range(cut)]
            state = pipeline.state_dict()
    with make().build(state=state) as pipeline:
        return got + list(pipeline)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_an_unordered_stage_resumes_with_nothing_lost_or_repeated(shape: str) -> None:
    make = SHAPES[shape]
    with make().build() as whole:
        full = _flat(list(whole))
    assert len({repr(x) for x in full}) == len(full) > 20  # every output distinct: a repeat shows
    for cuts in ([1], [7, 0, 3], [2, 2, 2, 2, 2], [13, 9]):
        assert _flat(_in_pieces(make, cuts)) == full, cuts


def test_a_checkpoint_at_the_end_of_an_unordered_run_resumes_to_nothing() -> None:
    with _first().build() as pipeline:
        assert len(list(pipeline)) == 90
        state = pipeline.state_dict()
    assert state["positions"] == [[90, 0, []]]
    with _first().build(state=state) as again:
        assert list(again) == []


@pytest.mark.skipif(not subinterpreters_available(), reason="needs CPython 3.13+")
def test_an_unordered_interpreter_stage_resumes() -> None:
    def make() -> ftpipe.PipelineBuilder:
        return _first("interpreter")

    with _first().build() as whole:
        full = _flat(list(whole))
    assert _flat(_in_pieces(make, [5, 11])) == full


def _refused(builder: ftpipe.PipelineBuilder, match: str) -> None:
    with builder.build() as pipeline:
        next(iter(pipeline))
        with pytest.raises(ValueError, match=match):
            pipeline.state_dict()
    with pytest.raises(ValueError, match=r"build\(state=...\): .*" + match):
        builder.build(state=_first().build().state_dict())


def test_what_cannot_be_traced_back_is_refused_with_the_reason() -> None:
    source = ftpipe.PipelineBuilder(seed=4).add_source(range(20))
    _refused(
        source.pipe(cw.info, ordered=False, name="a").pipe(cw.info, ordered=False, name="b"),
        r"stages 'a', 'b' have ordered=False",
    )
    _refused(
        ftpipe.PipelineBuilder(seed=4)
        .add_source(range(20))
        .pipe(cw.spread, ordered=False, name="g"),
        r"stage 'g' has ordered=False and is a generator",
    )
    _refused(
        ftpipe.PipelineBuilder(seed=4)
        .add_source(range(20))
        .pipe(cw.info, ordered=False, on_error="skip", name="s"),
        r"stage 's' has ordered=False and on_error='skip'",
    )
    _refused(
        ftpipe.PipelineBuilder(seed=4)
        .add_source(range(20))
        .pipe(cw.info, ordered=False, name="u")
        .aggregate(2)
        .disaggregate(),
        r"splits inputs after the ordered=False stage 'u'",
    )
    _refused(
        ftpipe.PipelineBuilder(seed=4)
        .add_source(range(20))
        .pipe(cw.info, ordered=False, name="u")
        .pipe(cw.info, on_error="skip", name="k"),
        r"stage 'k' skips failing inputs after the ordered=False stage 'u'",
    )


def test_a_malformed_unordered_entry_is_refused() -> None:
    with _first().build() as pipeline:
        state = pipeline.state_dict()
    for entry, match in (
        ([3, 0], r"stage 'late'.s entry must be \[inputs, 0, done\]"),
        ([3, 0, [5, 4]], "distinct and sorted"),
        ([3, 0, [3]], "each after its position 3"),
        ([3, 0, ["x"]], "must be an int"),
    ):
        with pytest.raises(ValueError, match=match):
            _first().build(state={**state, "positions": [entry]})


def test_a_channel_skips_numbers_and_numbers_the_rest_as_before() -> None:
    ch = Channel(8, ordered=True)
    ch.skip((1, 2, 5))
    ch.put(0, 4, ["a", "b", "c", "d"])
    assert ch.get(8) == (0, ["a"])  # a batch stops before a hole
    assert ch.get(8) == (3, ["d"])
    ch.put(4, 7, ["e", "f", "g"])
    ch.producer_done()
    assert ch.get(8) == (4, ["e"])
    assert ch.get(8) == (6, ["g"])
    with pytest.raises(EndOfStream):
        ch.get(8)


def test_a_lineage_maps_delivered_outputs_to_their_inputs() -> None:
    lineage = Lineage(done=(4,))  # input 4 was done by the checkpointed run
    lineage.puts.extend([(2, 4), (0, 1), (5, 7)])  # inputs 2 and 3 finished first
    assert lineage.done(0) == (0, [4])
    assert lineage.done(1) == (0, [2, 4])  # the first output delivered: input 2's
    assert lineage.done(3) == (1, [2, 3, 4])
    assert lineage.done(4) == (1, [2, 3, 4, 5])
    lineage.puts.append((1, 2))
    assert lineage.done(7) == (7, [])
