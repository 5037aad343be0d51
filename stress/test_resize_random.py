"""Random resizes during random pipelines: every item is delivered exactly once, in order
when every stage is ordered.

Each example builds 1-4 stages (plain, generator -- streamed or, with retries,
collected -- and async; on threads or on a process / interpreter pool), some with
``concurrency="auto"``, and resizes random stages to random sizes after random
numbers of outputs while the consumer reads.  Checked: the output against a
sequential model (as a list when all stages are ordered, as a multiset otherwise),
termination within a bound, and no thread, child process or segment left after.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from _stage_fns import async_stage, gen_model, gen_stage, map_value, plain_stage
from _stress_support import available_executor_kinds, bounded
from hypothesis import given, note
from hypothesis import strategies as st

import ftpipe
from conftest import Snapshot, budget, count_example, soak

TERMINATION_BOUND_S = 60.0


@dataclass(frozen=True)
class Stage:
    kind: str  # plain | gen | async
    concurrency: int | str
    ordered: bool
    executor: str
    retries: int
    latency: float


@dataclass(frozen=True)
class Spec:
    values: tuple[int, ...]
    stages: tuple[Stage, ...]
    resizes: tuple[tuple[int, int, int], ...]  # (after this many outputs, stage index, n)


@st.composite
def specs(draw: Any, executors: tuple[str, ...], max_len: int = 300) -> Spec:
    stages = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["plain", "plain", "gen", "async"]))
        executor = "thread" if kind == "async" else draw(st.sampled_from(executors))
        stages.append(
            Stage(
                kind,
                concurrency=draw(st.one_of(st.integers(1, 4), st.just("auto"))),
                ordered=draw(st.booleans()),
                executor=executor,
                retries=draw(st.sampled_from([0, 0, 1])),
                latency=draw(st.sampled_from([0.0, 0.0005])),
            )
        )
    values = tuple(draw(st.lists(st.integers(0, 10_000), max_size=max_len)))
    resizes = draw(
        st.lists(
            st.tuples(
                st.integers(0, max(0, len(values))),
                st.integers(0, len(stages) - 1),
                st.integers(1, 8),
            ),
            max_size=6,
        )
    )
    return Spec(values, tuple(stages), tuple(sorted(resizes)))


def model(spec: Spec) -> list[Any]:
    values: list[Any] = list(spec.values)
    for i, s in enumerate(spec.stages):
        salt = i + 1
        if s.kind == "gen":
            values = [v for x in values for v in gen_model(salt, x)]
        else:
            values = [map_value(x, salt) for x in values]
    return values


def build(spec: Spec) -> ftpipe.Pipeline:
    b = ftpipe.PipelineBuilder().add_source(list(spec.values))
    fns = {"plain": plain_stage, "gen": gen_stage, "async": async_stage}
    for i, s in enumerate(spec.stages):
        b.pipe(
            functools.partial(fns[s.kind], i + 1, 0, s.latency),
            concurrency=s.concurrency,  # type: ignore[arg-type]
            executor=None if s.executor == "thread" else s.executor,
            ordered=s.ordered,
            retries=s.retries,
            name=f"s{i}",
        )
    return b.build()


def consume(pipeline: ftpipe.Pipeline, spec: Spec, got: list[Any]) -> None:
    pending = list(spec.resizes)
    with pipeline:
        while pending and pending[0][0] == 0:
            _, i, n = pending.pop(0)
            pipeline.resize(f"s{i}", n)
        for value in pipeline:
            got.append(value)
            while pending and pending[0][0] <= len(got):
                _, i, n = pending.pop(0)
                try:
                    pipeline.resize(f"s{i}", n)
                except RuntimeError:
                    pass  # the last output was read: the pipeline finished
                else:
                    assert pipeline.stats()[f"s{i}"].concurrency == n


def check(spec: Spec, prop: str) -> None:
    count_example(prop)
    expected = model(spec)
    snap = Snapshot()
    got: list[Any] = []
    pipeline = build(spec)
    bounded(
        lambda: consume(pipeline, spec, got),
        TERMINATION_BOUND_S,
        on_hang=lambda: str(pipeline.stats()),
    )
    note(str(pipeline.stats()))
    leaks = snap.leaks(grace=5.0)
    assert not leaks, f"leaked after close: {leaks}"
    if all(s.ordered for s in spec.stages):
        assert got == expected
    else:
        assert Counter(got) == Counter(expected)


@given(spec=specs(("thread",)))
@budget(150)
def _thread_resizes(spec: Spec) -> None:
    check(spec, "random_resizes[thread]")


def test_random_resizes_on_threads() -> None:
    soak(_thread_resizes)


@pytest.mark.parametrize("kind", ["process", "interpreter"])
def test_random_resizes_on_pools(kind: str) -> None:
    if kind not in available_executor_kinds():
        pytest.skip(f"executor kind {kind!r} is not available here")

    @given(spec=specs(("thread", kind), max_len=60))
    @budget(15)
    def prop(spec: Spec) -> None:
        check(spec, f"random_resizes[{kind}]")

    soak(prop)
