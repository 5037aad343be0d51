"""One suite, every executor: real pipelines must behave the same on each.

Parametrised over the kind names the engine accepts ("thread", "process",
"interpreter") and over user-owned executor instances (which the pipeline must
never shut down).  Every test also checks that nothing leaked: threads (the
conftest fixture), child processes and /dev/shm segments.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

import numpy as np
import psutil
import pytest

import ftpipe
import test_executors_workloads as w
from ftpipe.executors import subinterpreters_available

needs_subinterpreters = pytest.mark.skipif(
    not subinterpreters_available(), reason="isolated subinterpreters need CPython 3.13+"
)

KIND_PARAMS = [
    pytest.param("thread", id="thread"),
    pytest.param("process", id="process"),
    pytest.param("interpreter", id="interpreter", marks=needs_subinterpreters),
    pytest.param(ftpipe.ThreadExecutor, id="ThreadExecutor-instance"),
    pytest.param(ftpipe.ProcessExecutor, id="ProcessExecutor-instance"),
    pytest.param(
        ftpipe.InterpreterExecutor, id="InterpreterExecutor-instance", marks=needs_subinterpreters
    ),
]


@pytest.fixture(scope="module")
def user_executors() -> Iterator[dict[type, Executor]]:
    """One warm, user-owned executor per class, started before any per-test leak check."""
    classes = [ftpipe.ThreadExecutor, ftpipe.ProcessExecutor]
    if subinterpreters_available():
        classes.append(ftpipe.InterpreterExecutor)
    made: dict[type, Executor] = {}
    for cls in classes:
        made[cls] = ex = cls(2, name=f"user-{cls.__name__}")
        list(ex.map(w.sleep_then, [0.2, 0.2]))  # both workers up now
    yield made
    for ex in made.values():
        ex.shutdown()
    # A user-owned process executor keeps its segments for reuse until shutdown.
    assert _segments() == set(), "shared-memory segments outlived the executors"


@pytest.fixture(params=KIND_PARAMS)
def executor(request: pytest.FixtureRequest, user_executors: dict[type, Executor]) -> Any:
    kind = request.param
    return user_executors[kind] if isinstance(kind, type) else kind


def _descendants() -> set[int]:
    me = os.getpid()
    found = set()
    for p in psutil.Process().children(recursive=True):
        try:
            helper = p.ppid() == me and any(
                k in " ".join(p.cmdline()) for k in ("forkserver", "resource_tracker")
            )
            if not helper and p.status() != psutil.STATUS_ZOMBIE:
                found.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def _segments(keep: tuple[str, ...] = ()) -> set[str]:
    prefix = f"ftpipe-{os.getpid()}-"
    return {e for e in os.listdir("/dev/shm") if e.startswith(prefix) and not e.startswith(keep)}


@pytest.fixture(autouse=True)
def _no_leaked_processes_or_segments(executor: Any) -> Iterator[None]:
    # Segments of a live user-owned executor are its reuse pool, checked at module end.
    keep = (executor.shm_prefix,) if isinstance(executor, ftpipe.ProcessExecutor) else ()
    before_children, before_segments = _descendants(), _segments(keep)
    yield
    leaked = _descendants() - before_children
    for pid in leaked:  # give a just-stopped child a moment to be reaped
        try:
            psutil.Process(pid).wait(2)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            pass
    assert _descendants() - before_children == set(), "child processes outlived the pipeline"
    assert _segments(keep) - before_segments == set(), (
        "shared-memory segments outlived the pipeline"
    )


def _build(
    executor: Any, fn: Any = w.square, source: Any = range(100), **kw: Any
) -> ftpipe.Pipeline:
    kw.setdefault("concurrency", 2)
    return (
        ftpipe.PipelineBuilder()
        .add_source(source)
        .pipe(fn, executor=executor, name="stage", **kw)
        .build()
    )


def test_ordered_results(executor: Any) -> None:
    with _build(executor) as pipeline:
        assert list(pipeline) == [x * x for x in range(100)]


def test_unordered_results_are_the_same_multiset(executor: Any) -> None:
    with _build(executor, ordered=False) as pipeline:
        assert sorted(pipeline) == [x * x for x in range(100)]


def test_generator_functions_fan_out_in_order(executor: Any) -> None:
    with _build(executor, w.explode_gen, range(6)) as pipeline:
        assert list(pipeline) == [x for x in range(6) for _ in range(x)]


def test_error_reraises_with_the_stage_note(executor: Any) -> None:
    with (
        _build(executor, functools.partial(w.fail_on, 13)) as pipeline,
        pytest.raises(ValueError, match="bad item 13") as info,
    ):
        list(pipeline)
    assert any("stage" in note and "'stage'" in note for note in info.value.__notes__)


def test_skip_drops_failing_items_only(executor: Any) -> None:
    with _build(executor, functools.partial(w.fail_on, 13), on_error="skip") as pipeline:
        assert list(pipeline) == [x for x in range(100) if x != 13]


def _assert_stopped(pipeline: ftpipe.Pipeline, most: int) -> None:
    """Every thread of the pipeline is joined, and the stage took at most ``most`` inputs."""
    threads = pipeline._run._threads  # noqa: SLF001 - this pipeline's own, not the process's
    assert threads and not [t.name for t in threads if t.is_alive()]
    taken = pipeline.stats()["stage"].items_in
    assert taken <= most, f"the stage went on after the consumer left: {taken} inputs"
    with pytest.raises(RuntimeError, match="already ran"):
        iter(pipeline)


def test_break_stops_the_pipeline(executor: Any) -> None:
    seen = []
    with _build(executor, w.square, range(100_000)) as pipeline:
        for i, x in enumerate(pipeline):
            seen.append(x)
            if i == 5:
                break
    assert seen == [0, 1, 4, 9, 16, 25]
    # Buffers are bounded: of 100,000 inputs only a few buffers' worth were taken.
    _assert_stopped(pipeline, most=1_000)


def test_exception_in_the_consumer_stops_the_pipeline(executor: Any) -> None:
    seen = []
    with (
        pytest.raises(KeyError, match="consumer"),
        _build(executor, w.square, range(100_000)) as pipeline,
    ):
        for x in pipeline:
            seen.append(x)
            raise KeyError("consumer")
    assert seen == [0]
    _assert_stopped(pipeline, most=1_000)


def test_numpy_arrays_cross(executor: Any) -> None:
    if executor == "interpreter" or isinstance(executor, ftpipe.InterpreterExecutor):
        pytest.skip(
            "numpy refuses to load in subinterpreters (tested in test_executors_interpreter.py)"
        )
    source = [np.full(1 << 18, i, dtype=np.float32) for i in range(8)]
    with _build(executor, w.numpy_double, source) as pipeline:
        out = list(pipeline)
    assert [float(a[0]) for a in out] == [2.0 * i for i in range(8)]


def test_user_executors_are_never_shut_down(executor: Any) -> None:
    with _build(executor, w.square, range(10)) as pipeline:
        assert list(pipeline) == [x * x for x in range(10)]
    if isinstance(executor, Executor):
        # The pipeline is done with it; its owner is not.
        assert executor.submit(w.square, 3).result(timeout=30) == 9
