"""Random checkpoints of random resumable pipelines: the pieces add up to one whole run.

Each example builds an ordered pipeline within what checkpoints cover (a list, a
range or a source with ``state_dict()``/``load_state_dict()`` of 0-200 items; 1-4
stages among plain functions on 1-4 threads, an async function, a generator of 0-3
outputs per input, a function whose failures are skipped (``on_error="skip"``),
``aggregate(k)`` with or without ``drop_last``, ``disaggregate`` after an aggregate;
optionally ``seed=`` and a stage reporting ``ftpipe.item_seed()``), takes ``state_dict()`` after a random
number of ``next()`` calls (0 and after exhaustion included), resumes with
``build(state=...)`` from the same factory, optionally checkpoints again before any
``next()``, and resumes from that.  Checked: the concatenation of what every pipeline
yielded equals an uninterrupted run.  Nothing depends on timing.

With one ``ordered=False`` stage (a function whose calls finish out of order; after it
only functions and ``aggregate``), the order is completion order in every run: checked
is that the pieces hold the same outputs as an uninterrupted run, each as often.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import pytest
from _stage_fns import (
    SavingSource,
    async_stage,
    expand_stage,
    plain_stage,
    seeded_stage,
)
from _stress_support import bounded
from hypothesis import given
from hypothesis import strategies as st

import ftpipe
from conftest import budget, count_example, soak

TERMINATION_BOUND_S = 60.0


@dataclass(frozen=True)
class Stage:
    kind: str  # plain | async | aggregate | disaggregate | seeded | expand | skip
    concurrency: int
    size: int  # aggregate only
    drop_last: bool  # aggregate only
    process: bool  # plain / seeded only: on a process pool
    ordered: bool = True  # plain / async / seeded: False for at most one stage


@dataclass(frozen=True)
class Spec:
    length: int
    source: str  # list | range | saving
    seed: int | None
    stages: tuple[Stage, ...]
    cuts: tuple[int, ...]  # next() calls before each checkpoint (clamped to what is left)
    again: bool  # checkpoint again right after each resume, before any next(), and resume that


@st.composite
def specs(draw: Any, process: bool = False, unordered: bool = False) -> Spec:
    seed = draw(st.one_of(st.none(), st.integers(0, 2**31)))
    kinds = ["plain", "async", "aggregate", "disaggregate", "expand", "skip"]
    kinds += ["seeded"] if seed is not None else []
    stages: list[Stage] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(kinds))
        if kind == "disaggregate" and (not stages or stages[-1].kind != "aggregate"):
            kind = "aggregate"  # it flattens lists: only right after an aggregate
        stages.append(
            Stage(
                kind,
                concurrency=draw(st.integers(1, 4)),
                size=draw(st.integers(1, 5)),
                drop_last=draw(st.booleans()),
                process=False,
            )
        )
    if process:
        i = draw(st.integers(0, len(stages) - 1))
        kind = draw(st.sampled_from(["plain", "expand"]))
        stages[i] = Stage(kind, stages[i].concurrency, 1, False, process=True)
        for j in range(1, len(stages)):  # disaggregate flattens lists: only after an aggregate
            if stages[j].kind == "disaggregate" and stages[j - 1].kind != "aggregate":
                stages[j] = Stage("aggregate", 1, 2, False, process=False)
    if unordered:  # one stage in completion order; after it, what can be traced back
        u = draw(st.integers(0, len(stages) - 1))
        kind = draw(
            st.sampled_from(
                ["plain", "async", "seeded"] if seed is not None else ["plain", "async"]
            )
        )
        stages[u] = Stage(kind, draw(st.integers(2, 4)), 1, False, stages[u].process, False)
        for j in range(u + 1, len(stages)):
            if stages[j].kind not in ("plain", "async", "aggregate"):
                stages[j] = Stage("plain", stages[j].concurrency, 1, False, stages[j].process)
        if stages[u].process and kind == "async":
            stages[u] = Stage("plain", stages[u].concurrency, 1, False, True, False)
    cuts = tuple(draw(st.lists(st.integers(0, 210), min_size=1, max_size=3)))
    return Spec(
        length=draw(st.integers(0, 200)),
        source=draw(st.sampled_from(["list", "range", "saving"])),
        seed=seed,
        stages=tuple(stages),
        cuts=cuts,
        again=draw(st.booleans()),
    )


def factory(spec: Spec) -> ftpipe.PipelineBuilder:
    source: Any = {
        "list": lambda n: list(range(n)),
        "range": range,
        "saving": SavingSource,
    }[spec.source](spec.length)
    b = ftpipe.PipelineBuilder(seed=spec.seed).add_source(source)
    for i, s in enumerate(spec.stages):
        salt = i + 1
        if s.kind == "aggregate":
            b.aggregate(s.size, drop_last=s.drop_last)
            continue
        if s.kind == "disaggregate":
            b.disaggregate()
            continue
        late = 0.0 if s.ordered else 0.002  # some calls sleep: completion order shuffles
        if s.kind == "plain":
            fn: Any = functools.partial(plain_stage, salt, 0, late)
        elif s.kind == "skip":
            fn = functools.partial(plain_stage, salt, 3, 0.0)  # ints with (x + salt) % 3 == 0 fail
        elif s.kind == "expand":
            fn = functools.partial(expand_stage, salt)
        elif s.kind == "async":
            fn = functools.partial(async_stage, salt, 0, late)
        else:
            fn = functools.partial(seeded_stage, salt)
        b.pipe(
            fn,
            concurrency=s.concurrency,
            executor="process" if s.process else None,
            on_error="skip" if s.kind == "skip" else "raise",
            ordered=s.ordered,
            name=f"s{i}",
        )
    return b


def take(it: Any, n: int) -> list[Any]:
    """Up to ``n`` outputs of iterator ``it`` (fewer if it ends first)."""
    got = []
    for _ in range(n):
        try:
            got.append(next(it))
        except StopIteration:
            break
    return got


def run_in_pieces(spec: Spec) -> list[Any]:
    pieces: list[Any] = []
    state: dict[str, Any] | None = None
    for cut in spec.cuts:
        if state is not None and spec.again:
            with factory(spec).build(state=state) as pipeline:
                again = pipeline.state_dict()  # before any next(): the same point
            assert again == state
            state = again
        with factory(spec).build(state=state) as pipeline:
            it = iter(pipeline)
            got = take(it, cut)
            pieces += got
            if len(got) < cut:  # exhausted: a checkpoint at the very end
                assert take(it, 1) == []
            state = pipeline.state_dict()
        assert json.loads(json.dumps(state)) == state
    with factory(spec).build(state=state) as pipeline:
        pieces += list(pipeline)
    return pieces


def check(spec: Spec, prop: str) -> None:
    count_example(prop)
    with factory(spec).build() as whole:
        expected = list(whole)
    got = bounded(lambda: run_in_pieces(spec), TERMINATION_BOUND_S)
    if all(stage.ordered for stage in spec.stages):
        assert got == expected
    else:  # completion order (and the lists made from it): the same outputs, as often
        assert sorted(map(repr, _flat(got))) == sorted(map(repr, _flat(expected)))


def _flat(values: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for v in values:
        flat += _flat(v) if isinstance(v, list) else [v]
    return flat


@given(spec=specs())
@budget(120)
def _resume_on_threads(spec: Spec) -> None:
    check(spec, "random_resume[thread]")


def test_random_checkpoints_resume_exactly() -> None:
    soak(_resume_on_threads)


def test_random_checkpoints_resume_exactly_with_a_process_stage() -> None:
    @given(spec=specs(process=True))
    @budget(10)
    def prop(spec: Spec) -> None:
        check(spec, "random_resume[process]")

    soak(prop)


def test_random_checkpoints_of_an_unordered_stage_lose_and_repeat_nothing() -> None:
    @given(spec=specs(unordered=True))
    @budget(60)
    def prop(spec: Spec) -> None:
        check(spec, "random_resume[unordered]")

    soak(prop)


def test_random_checkpoints_of_an_unordered_process_stage() -> None:
    @given(spec=specs(process=True, unordered=True))
    @budget(10)
    def prop(spec: Spec) -> None:
        check(spec, "random_resume[unordered-process]")

    soak(prop)


def test_a_generator_source_is_refused_at_state_dict() -> None:
    builder = ftpipe.PipelineBuilder().add_source(iter(range(10))).pipe(abs, name="abs")
    with builder.build() as pipeline:
        take(iter(pipeline), 3)
        with pytest.raises(ValueError, match="not a sequence"):
            pipeline.state_dict()
