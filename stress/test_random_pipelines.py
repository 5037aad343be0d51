"""Model-based random pipelines: whatever hypothesis builds, the engine must agree with
a sequential model of the same pipeline.

Invariants checked per example:

- exactly-once delivery: with no error, the output equals the model's (as a list when
  every stage is ordered, as a multiset otherwise); with an error or an early break,
  what was delivered is a prefix (all ordered) or a sub-multiset of the model's output;
- the right error: when the model says some stage must fail (``raise`` policy, or more
  than ``max_failures`` skipped), the consumer gets that stage's own exception, with one
  ftpipe note naming a stage that may fail; when the model says none can, none surfaces;
  an exception raised by the consumer comes out of the ``with`` block unchanged;
- termination within a bound (a hang fails with every thread's stack);
- after each example: every pipeline thread joined, no child process, no /dev/shm segment.
"""

from __future__ import annotations

import functools
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import pytest
from _stage_fns import (
    AsyncSource,
    ConsumerFault,
    FailingSource,
    SourceFault,
    StageFault,
    async_stage,
    fails,
    gen_model,
    gen_stage,
    map_value,
    plain_stage,
)
from _stress_support import available_executor_kinds, bounded
from hypothesis import given, note
from hypothesis import strategies as st

import ftpipe
from conftest import Snapshot, budget, count_example, soak

# A pipeline of at most 200 items with sub-millisecond latencies finishes in well
# under a second; anything near this bound is a hang, not a slow machine.
TERMINATION_BOUND_S = 60.0


@dataclass(frozen=True)
class StageSpec:
    kind: str  # plain | gen | async | agg | disagg
    concurrency: int = 1
    ordered: bool = True
    buffer_size: int | None = None
    on_error: str = "raise"
    max_failures: int | None = None
    fail_mod: int = 0  # 0: never fails
    latency: float = 0.0
    size: int = 0  # aggregate
    drop_last: bool = False
    executor: str = "thread"  # thread | pool (a user ThreadPoolExecutor) | process | interpreter


@dataclass(frozen=True)
class Spec:
    values: tuple[int, ...]
    source: str  # list | iter | async
    source_fail_at: int | None
    stages: tuple[StageSpec, ...]
    sink_buffer: int | None
    consumer: str  # all | break | raise
    consumer_after: int
    use_with: bool


def stage_specs(
    executors: tuple[str, ...], fallible: bool = True
) -> st.SearchStrategy[tuple[StageSpec, ...]]:
    """1-5 stages; aggregate only on items, disaggregate only on lists, no failures on lists."""

    @st.composite
    def build(draw: Any) -> tuple[StageSpec, ...]:
        n = draw(st.integers(1, 5))
        shape = "int"
        out = []
        for _ in range(n):
            kinds = (
                ["plain", "gen", "async", "agg"] if shape == "int" else ["plain", "async", "disagg"]
            )
            kind = draw(st.sampled_from(kinds))
            if kind == "agg":
                out.append(
                    StageSpec("agg", size=draw(st.integers(1, 5)), drop_last=draw(st.booleans()))
                )
                shape = "list"
                continue
            if kind == "disagg":
                out.append(StageSpec("disagg"))
                shape = "int"
                continue
            on_error = draw(st.sampled_from(["raise", "skip"]))
            fail_mod = (
                draw(st.sampled_from([0, 0, 0, 7, 13, 41])) if fallible and shape == "int" else 0
            )
            out.append(
                StageSpec(
                    kind,
                    concurrency=draw(st.integers(1, 8)),
                    ordered=draw(st.booleans()),
                    buffer_size=draw(st.one_of(st.none(), st.integers(1, 8))),
                    on_error=on_error,
                    max_failures=draw(st.one_of(st.none(), st.integers(0, 3)))
                    if on_error == "skip"
                    else None,
                    fail_mod=fail_mod,
                    latency=draw(st.sampled_from([0.0, 0.0, 0.0005])),
                    executor=draw(st.sampled_from(executors)),
                )
            )
        return tuple(out)

    return build()


@st.composite
def specs(
    draw: Any, executors: tuple[str, ...] = ("thread", "thread", "pool"), max_len: int = 200
) -> Spec:
    values = tuple(draw(st.lists(st.integers(0, 10_000), max_size=max_len)))
    source_fail_at = (
        draw(st.one_of(st.none(), st.integers(0, max(0, len(values) - 1)))) if values else None
    )
    if draw(st.integers(0, 4)) != 0:
        source_fail_at = None  # a failing source in one example of five
    consumer = draw(st.sampled_from(["all", "all", "all", "break", "raise"]))
    return Spec(
        values=values,
        source=draw(st.sampled_from(["list", "iter", "async"])),
        source_fail_at=source_fail_at,
        stages=draw(stage_specs(executors)),
        sink_buffer=draw(st.one_of(st.none(), st.integers(1, 8))),
        consumer=consumer,
        consumer_after=draw(st.integers(0, 20)),
        use_with=draw(st.booleans()),
    )


# -- the sequential model -------------------------------------------------------------------


@dataclass
class Expected:
    output: list[Any]
    may_fail: set[str]  # stage names (or "source") that the model says can raise
    all_ordered: bool
    leaves_only: bool  # an unordered stage before an aggregate: only the leaf multiset is fixed
    # An aggregate with drop_last after a reordering stage drops the last short group
    # *in arrival order*: which of its inputs are dropped varies from run to run.  For
    # the first such aggregate: how many inputs it drops, and the final leaves each of
    # its inputs leads to (the output is everything but the leaves of `dropped` of them).
    dropped: int = 0
    per_input: list[Counter[Any]] | None = None
    # A second drop_last aggregate after a reordering: the output is only known to be
    # made of leaves the model produces with no drop after a reordering, each at most
    # as often (those leaves are `upper`).
    ambiguous: bool = False
    upper: Counter[Any] | None = None

    @property
    def exact_leaves(self) -> bool:
        return self.per_input is None and not self.ambiguous


def stage_name(i: int, spec: StageSpec) -> str:
    return f"s{i}-{spec.kind}"


def _step(i: int, s: StageSpec, values: list[Any]) -> tuple[list[Any], int]:
    """What stage ``i`` makes of ``values`` run sequentially, and how many inputs failed."""
    if s.kind == "agg":
        groups = [values[j : j + s.size] for j in range(0, len(values), s.size)]
        if s.drop_last and groups and len(groups[-1]) < s.size:
            groups.pop()
        return groups, 0
    if s.kind == "disagg":
        return [v for g in values for v in g], 0
    salt = i + 1
    out: list[Any] = []
    failures = 0
    for v in values:
        if fails(v, salt, s.fail_mod):
            failures += 1
            continue
        out.extend(gen_model(salt, v) if s.kind == "gen" else [map_value(v, salt)])
    return out, failures


def model(spec: Spec) -> Expected:
    values = list(spec.values)
    may_fail: set[str] = set()
    if spec.source_fail_at is not None:
        values = values[: spec.source_fail_at]
        may_fail.add("source")
    reordered = False
    leaves_only = False
    varying: int | None = None  # index of the first aggregate whose dropped group varies
    dropped = 0
    ambiguous = False
    varying_inputs: list[Any] = []
    for i, s in enumerate(spec.stages):
        if s.kind == "agg" and reordered:
            leaves_only = True
            if varying is not None and s.drop_last:
                ambiguous = True
            elif s.drop_last and len(values) % s.size:
                varying, dropped, varying_inputs = i, len(values) % s.size, list(values)
        values, failures = _step(i, s, values)
        if failures and (
            s.on_error == "raise" or (s.max_failures is not None and failures > s.max_failures)
        ):
            may_fail.add(stage_name(i, s))
        if s.kind not in ("agg", "disagg"):
            reordered = reordered or not s.ordered
    per_input = upper = None
    if ambiguous:
        kept, reordered = list(spec.values[: spec.source_fail_at]), False
        for i, s in enumerate(spec.stages):
            keep_all = s.kind == "agg" and reordered and s.drop_last
            kept, _ = _step(i, replace(s, drop_last=False) if keep_all else s, kept)
            reordered = reordered or (s.kind not in ("agg", "disagg") and not s.ordered)
        upper = leaves(kept)
    elif varying is not None:
        # Every stage after the aggregate maps each leaf on its own (groups only
        # regroup), so each of its inputs leads to its own final leaves.
        per_input = []
        for v in varying_inputs:
            out: list[Any] = [[v]]
            for i in range(varying + 1, len(spec.stages)):
                out, _ = _step(i, spec.stages[i], out)
            per_input.append(leaves(out))
    all_ordered = all(s.ordered for s in spec.stages)
    return Expected(
        values, may_fail, all_ordered, leaves_only, dropped, per_input, ambiguous, upper
    )


def explained_by_a_dropped_group(have: Counter[Any], expected: Expected) -> bool:
    """Whether ``have`` is the model's leaves less those of exactly ``dropped`` inputs."""
    assert expected.per_input is not None
    missing = sum(expected.per_input, Counter()) - have
    candidates = [c for c in expected.per_input if c and not c - missing]
    empty = sum(1 for c in expected.per_input if not c)  # inputs that lead to nothing

    def cover(start: int, remaining: Counter[Any], picked: int) -> bool:
        if not remaining:
            return picked <= expected.dropped <= picked + empty
        if picked == expected.dropped:
            return False
        return any(
            cover(j + 1, remaining - c, picked + 1)
            for j, c in enumerate(candidates[start:], start)
            if not c - remaining
        )

    return cover(0, missing, 0)


def freeze(v: Any) -> Any:
    return tuple(freeze(x) for x in v) if isinstance(v, list) else v


def leaves(values: list[Any]) -> Counter[Any]:
    flat: list[Any] = []
    for v in values:
        flat.extend(v if isinstance(v, list) else [v])
    return Counter(flat)


def flat(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        out.extend(v if isinstance(v, list) else [v])
    return out


# -- building and running -------------------------------------------------------------------


def build(spec: Spec, pools: list[ThreadPoolExecutor]) -> ftpipe.Pipeline:
    values = list(spec.values)
    if spec.source == "async":
        source: Any = AsyncSource(values, spec.source_fail_at)
    elif spec.source == "iter" or spec.source_fail_at is not None:
        source = FailingSource(values, spec.source_fail_at)
    else:
        source = values
    b = ftpipe.PipelineBuilder().add_source(source)
    for i, s in enumerate(spec.stages):
        salt = i + 1
        if s.kind == "agg":
            b.aggregate(s.size, drop_last=s.drop_last)
            continue
        if s.kind == "disagg":
            b.disaggregate()
            continue
        fn = {"plain": plain_stage, "gen": gen_stage, "async": async_stage}[s.kind]
        executor: Any = None
        if s.executor == "pool":
            pools.append(
                ThreadPoolExecutor(max_workers=s.concurrency, thread_name_prefix="stress-user-pool")
            )
            executor = pools[-1]
        elif s.executor != "thread":
            executor = s.executor
        b.pipe(
            functools.partial(fn, salt, s.fail_mod, s.latency),
            concurrency=s.concurrency,
            executor=executor,
            ordered=s.ordered,
            name=stage_name(i, s),
            on_error=s.on_error,
            max_failures=s.max_failures,
            buffer_size=s.buffer_size,
        )
    last_sized = bool(spec.stages) and spec.stages[-1].buffer_size is not None
    if spec.sink_buffer is not None and not last_sized:
        # A last stage's buffer_size is the sink's: giving both is a build error.
        b.add_sink(buffer_size=spec.sink_buffer)
    return b.build()


def consume(pipeline: ftpipe.Pipeline, spec: Spec, got: list[Any]) -> None:
    def loop() -> None:
        for x in pipeline:
            if spec.consumer != "all" and len(got) == spec.consumer_after:
                if spec.consumer == "raise":
                    raise ConsumerFault("planned consumer failure")
                break
            got.append(x)

    if spec.use_with:
        with pipeline:
            loop()
    else:
        try:
            loop()
        finally:
            pipeline.close()


def ftpipe_note(exc: BaseException) -> list[str]:
    return [n for n in getattr(exc, "__notes__", []) if n.startswith("ftpipe:")]


def check(spec: Spec, prop: str) -> None:
    count_example(prop)
    expected = model(spec)
    note(f"model: {expected}")
    pools: list[ThreadPoolExecutor] = []
    snap = Snapshot()
    got: list[Any] = []
    error: BaseException | None = None
    pipeline = build(spec, pools)
    try:
        bounded(
            lambda: consume(pipeline, spec, got),
            TERMINATION_BOUND_S,
            on_hang=lambda: str(pipeline.stats()),
        )
    except (StageFault, SourceFault, ConsumerFault) as exc:
        error = exc
    finally:
        for pool in pools:
            pool.shutdown(wait=True)
    note(f"got {len(got)} items, error {error!r}")
    stats = pipeline.stats()
    note(str(stats))

    # Nothing left running once the with block (or close()) returned.
    leaks = snap.leaks(grace=5.0)
    assert not leaks, f"leaked after close: {leaks}"

    # Errors: the consumer's own comes back unchanged; a stage's only where the model allows.
    broke_early = spec.consumer != "all" and len(got) == spec.consumer_after
    if isinstance(error, ConsumerFault):
        assert spec.consumer == "raise" and broke_early
        assert not ftpipe_note(error), (
            f"ftpipe annotated the consumer's own exception: {error.__notes__}"
        )
    elif error is not None:
        notes = ftpipe_note(error)
        assert len(notes) == 1, f"expected one ftpipe note, got {getattr(error, '__notes__', None)}"
        if isinstance(error, SourceFault):
            assert "source" in expected.may_fail and "source" in notes[0]
        else:
            named = [s for s in expected.may_fail if f"'{s}'" in notes[0]]
            assert named, (
                f"note {notes[0]!r} names no stage the model lets fail ({expected.may_fail})"
            )
    else:
        # No error: the model must have allowed success (or the consumer left before it).
        assert not expected.may_fail or broke_early, (
            f"the model says {expected.may_fail} must raise, but the pipeline ended cleanly with {len(got)} items"
        )

    complete = error is None and not broke_early
    if not complete:
        # Stopped early (error or break): what came out is part of what the model
        # produces.  Compared leaf by leaf: after a failure the engine delivers the
        # outputs of earlier inputs, and an aggregate downstream flushes its short
        # last group, which the model's groups never contain.
        have_flat, want_flat = flat(got), flat(expected.output)
        if expected.all_ordered:
            assert have_flat == want_flat[: len(have_flat)], (
                "ordered output is not a prefix of the model's"
            )
        else:
            extra = Counter(have_flat) - Counter(want_flat)
            assert not extra or not expected.exact_leaves, (
                f"delivered items the model never produces: {extra}"
            )
    elif expected.all_ordered:
        assert got == expected.output
    elif not expected.leaves_only:
        have, want = Counter(map(freeze, got)), Counter(map(freeze, expected.output))
        assert have == want, f"missing {want - have}, extra {have - want}"
    else:
        have = leaves(got)
        if expected.exact_leaves:
            want = leaves(expected.output)
            assert have == want, f"missing {want - have}, extra {have - want}"
        elif expected.per_input is not None:
            everything = sum(expected.per_input, Counter())
            assert not have - everything, f"extra {have - everything}"
            assert explained_by_a_dropped_group(have, expected), (
                f"missing {everything - have} is not what {expected.dropped} dropped "
                "inputs of the drop_last aggregate lead to"
            )
        else:
            assert expected.upper is not None
            assert not have - expected.upper, f"extra {have - expected.upper}"

    # Stats agree with what came out (when the run completed).
    if complete and spec.stages:
        assert stats.stages[-1].items_out == len(got), str(stats)
        assert stats.stages[0].items_out == len(spec.values) or spec.source_fail_at is not None


THREAD_EXECUTORS = ("thread", "thread", "pool")


@given(spec=specs(THREAD_EXECUTORS))
@budget(500)
def _thread_pipelines(spec: Spec) -> None:
    check(spec, "random_thread_pipelines")


def test_random_thread_pipelines() -> None:
    soak(_thread_pipelines)


def _other_kinds() -> tuple[str, ...]:
    return tuple(k for k in available_executor_kinds() if k != "thread")


@pytest.mark.parametrize("kind", ["process", "interpreter"])
def test_random_pipelines_other_executors(kind: str) -> None:
    if kind not in _other_kinds():
        pytest.skip(
            f"executor kind {kind!r} is not available here (not registered, or no subinterpreters before 3.13)"
        )

    @given(spec=specs(("thread", kind), max_len=40))
    @budget(25)
    def prop(spec: Spec) -> None:
        check(spec, f"random_pipelines[{kind}]")

    soak(prop)
