"""priority= / cpus=: every thread and process a pipeline or executor starts is lowered, the
consumer's thread is not, and bad values fail at build time.

Lowering is always permitted to an unprivileged user; raising back is not, so these
tests only ever lower threads they start (never the test's own thread).
"""

from __future__ import annotations

import os
import sys
import threading
import warnings

import pytest

import ftpipe
import priority_probe as probe
from ftpipe import _priority
from ftpipe.executors import (
    InterpreterExecutor,
    ProcessExecutor,
    ThreadExecutor,
    subinterpreters_available,
)

pytestmark = pytest.mark.timeout(60)

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority")
SCHED_IDLE = getattr(os, "SCHED_IDLE", -1)


def _consumer() -> tuple[int, int]:
    return probe.sched_of(threading.get_native_id())


def _expected(priority: str, base: tuple[int, int], own_process: bool = False) -> tuple[int, int]:
    """How a thread started by a consumer scheduled as ``base`` runs at ``priority``.

    ``own_process``: the thread is in a process of the pipeline's own (a worker, the
    ``run_in_subprocess`` child), where "background" goes down to SCHED_IDLE.
    """
    nice, policy = base
    if priority == "normal":
        return base
    lowered = max(nice, _priority.BACKGROUND_NICE)
    idle = priority == "idle" or (own_process and priority == "background")
    return (lowered, SCHED_IDLE if idle else policy)


PRIORITIES = ["normal", "background", "idle"]


# -- validation (every system) ---------------------------------------------------------------


@pytest.mark.parametrize("bad", ["low", "BACKGROUND", "", None, 19])
def test_a_bad_priority_is_a_value_error_naming_the_valid_ones(bad: object) -> None:
    for make in (
        lambda: ftpipe.PipelineBuilder(priority=bad),  # type: ignore[arg-type]
        lambda: ThreadExecutor(1, priority=bad),  # type: ignore[arg-type]
        lambda: ProcessExecutor(1, priority=bad),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match="'normal', 'background', 'idle'"):
            make()


def test_run_in_subprocess_checks_priority_before_starting_a_child() -> None:
    builder = ftpipe.PipelineBuilder().add_source(range(3))
    with pytest.raises(ValueError, match=r"run_in_subprocess: priority must be one of"):
        ftpipe.run_in_subprocess(builder, priority="nice")


def test_bad_cpus_fail_at_build_time() -> None:
    with pytest.raises(ValueError, match="at least one CPU"):
        ftpipe.PipelineBuilder(cpus=set())
    with pytest.raises(TypeError, match="CPU ids"):
        ftpipe.PipelineBuilder(cpus=["0"])
    with pytest.raises(TypeError, match="set of CPU ids"):
        ftpipe.PipelineBuilder(cpus=3)  # type: ignore[arg-type]
    if hasattr(os, "sched_getaffinity"):
        outside = max(os.sched_getaffinity(0)) + 1000
        with pytest.raises(ValueError, match=r"not among the CPUs this process may use"):
            ThreadExecutor(1, cpus={outside})


def test_normal_is_the_default_and_touches_nothing() -> None:
    config = ftpipe.PipelineBuilder().add_source([1]).config()
    assert config.scheduling == _priority.NORMAL and config.scheduling.is_normal


@pytest.mark.thread_unsafe(reason="patches ftpipe._priority's module state; warnings are global")
def test_elsewhere_a_thread_is_left_alone_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_priority, "_PER_THREAD", False)
    monkeypatch.setattr(_priority, "_warned", set())
    monkeypatch.setattr(_priority, "_process_lowered", False)
    before = _consumer()
    scheduling = _priority.Scheduling.of("background", None, "test")
    with pytest.warns(RuntimeWarning, match="per thread on Linux only"):
        scheduling.apply_to_thread()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduling.apply_to_thread()  # once only
    assert _consumer() == before


# -- the pipeline's own threads (Linux) --------------------------------------------------------


@linux
@pytest.mark.parametrize("priority", PRIORITIES)
def test_stage_and_source_threads_run_at_the_pipelines_priority(priority: str) -> None:
    base = _consumer()
    source = probe.RecordingSource(40)
    builder = (
        ftpipe.PipelineBuilder(priority=priority)
        .add_source(source)
        .pipe(probe.here, concurrency=3)
        .aggregate(4)
        .disaggregate()
    )
    with builder.build() as pipeline:
        seen = set(pipeline)
    expected = _expected(priority, base)
    assert {s[:2] for s in seen} == {expected}
    assert {s[:2] for s in source.seen} == {expected}
    assert _consumer() == base  # the consumer's thread keeps its priority


@linux
@pytest.mark.parametrize("priority", ["background", "idle"])
def test_async_stages_and_threads_a_stage_starts_are_lowered_too(priority: str) -> None:
    base = _consumer()
    builder = (
        ftpipe.PipelineBuilder(priority=priority)
        .add_source(range(6))
        .pipe(probe.here_async, concurrency=2)
        .pipe(lambda t: (t[:2], probe.started_thread()))
    )
    with builder.build() as pipeline:
        seen = set(pipeline)
    assert seen == {(_expected(priority, base), _expected(priority, base))}
    assert _consumer() == base


@linux
def test_cpus_pin_the_pipelines_threads_only() -> None:
    mine = os.sched_getaffinity(0)
    one = {min(mine)}
    builder = (
        ftpipe.PipelineBuilder(cpus=one).add_source(range(8)).pipe(probe.affinity, concurrency=2)
    )
    with builder.build() as pipeline:
        assert set(pipeline) == {frozenset(one)}
    assert os.sched_getaffinity(0) == mine


# -- executors and child processes (Linux) ---------------------------------------------------


@linux
@pytest.mark.parametrize("priority", PRIORITIES)
def test_process_stage_children_and_their_threads_are_lowered(priority: str) -> None:
    base = _consumer()
    expected = _expected(priority, base)
    in_children = _expected(priority, base, own_process=True)
    builder = (
        ftpipe.PipelineBuilder(priority=priority)
        .add_source(range(8))
        .pipe(probe.every_thread, concurrency=2, executor="process", name="kids")
        .pipe(lambda threads: (threads, probe.here()[:2]))
    )
    with builder.build() as pipeline:
        out = [next(pipeline)]
        # The executor's worker threads here, which wait on the children (read while
        # the pipeline runs: they end with it).
        workers = {
            probe.sched_of(t.native_id)
            for t in threading.enumerate()
            if t.name.startswith("kids-") and t.native_id is not None
        }
        out.extend(pipeline)
    assert workers == {expected}
    assert {s for threads, _ in out for s in threads} == {in_children}
    assert {here for _, here in out} == {expected}
    assert _consumer() == base


@linux
@pytest.mark.parametrize("priority", PRIORITIES)
def test_process_executor_workers_are_lowered_from_the_start(priority: str) -> None:
    base = _consumer()
    with ProcessExecutor(2, priority=priority) as pool:
        threads = [s for ss in pool.map(probe.every_thread, range(4)) for s in ss]
        # Read from outside too: every thread of every worker process.
        outside = {
            probe.sched_of(int(tid), pid)
            for pid in pool.worker_pids()
            for tid in os.listdir(f"/proc/{pid}/task")
        }
    assert set(threads) == {_expected(priority, base, own_process=True)}
    assert outside == {_expected(priority, base, own_process=True)}
    assert _consumer() == base


@linux
def test_a_background_pool_leaves_later_normal_children_normal() -> None:
    # A forkserver started by a lowered thread would lower every later child for good.
    base = _consumer()
    with ProcessExecutor(1, priority="background") as low:
        assert low.submit(probe.here).result(30)[:2] == _expected(
            "background", base, own_process=True
        )
    with ProcessExecutor(1) as normal:
        assert normal.submit(probe.here).result(30)[:2] == base


@linux
@pytest.mark.parametrize("priority", ["normal", "background"])
def test_thread_executor_workers(priority: str) -> None:
    base = _consumer()
    with ThreadExecutor(2, priority=priority) as pool:
        assert set(pool.map(probe.here, range(4))) == {(*_expected(priority, base), os.getpid())}
    assert _consumer() == base


@linux
@pytest.mark.skipif(not subinterpreters_available(), reason="isolated subinterpreters: 3.13+")
def test_interpreter_executor_serving_threads_inherit_the_priority() -> None:
    base = _consumer()
    with InterpreterExecutor(2, priority="background") as pool:
        seen = set(pool.map(probe.here, range(4)))
    assert {s[:2] for s in seen} == {_expected("background", base)}
    assert _consumer() == base


@linux
@pytest.mark.parametrize(
    ("own", "asked", "expected"),
    [
        ("normal", None, "normal"),
        ("background", None, "background"),
        ("normal", "background", "background"),
        ("normal", "idle", "idle"),
    ],
)
def test_run_in_subprocess_child_and_all_its_threads(
    own: str, asked: str | None, expected: str
) -> None:
    base = _consumer()
    builder = (
        ftpipe.PipelineBuilder(priority=own)
        .add_source(range(6))
        .pipe(probe.every_thread, concurrency=2)
    )
    with ftpipe.run_in_subprocess(builder, buffer_size=4, priority=asked) as results:
        pid = results.pid
        inside = {s for threads in results for s in threads}
    assert pid != os.getpid()
    assert inside == {_expected(expected, base, own_process=True)}
    assert _consumer() == base


@linux
def test_a_normal_pool_fed_by_a_background_pipeline_does_not_lower_the_forkserver() -> None:
    # Its worker threads start from the pipeline's lowered threads (and inherit
    # that); its children come from the forkserver, started by the constructor here.
    base = _consumer()
    with ProcessExecutor(1) as pool:
        builder = (
            ftpipe.PipelineBuilder(priority="background")
            .add_source(range(2))
            .pipe(probe.here, executor=pool)
        )
        with builder.build() as pipeline:
            assert {s[:2] for s in pipeline} == {base}
    with ProcessExecutor(1) as later:
        assert later.submit(probe.here).result(30)[:2] == base


@linux
def test_cpus_pin_worker_processes_and_the_subprocess_child() -> None:
    mine = os.sched_getaffinity(0)
    one = frozenset({min(mine)})
    with ProcessExecutor(1, cpus=one) as pool:
        assert pool.submit(probe.affinity).result(30) == one
    builder = ftpipe.PipelineBuilder().add_source(range(2)).pipe(probe.affinity)
    with ftpipe.run_in_subprocess(builder, cpus=one) as results:
        assert set(results) == {one}
    assert os.sched_getaffinity(0) == mine


@linux
def test_pools_kept_across_epochs_run_at_the_pipelines_priority() -> None:
    from ftpipe._engine._pipeline import Pipeline
    from ftpipe.executors._persistent import PersistentPools

    base = _consumer()
    pools = PersistentPools()
    try:
        for priority in ("background", "background", "normal"):
            builder = (
                ftpipe.PipelineBuilder(priority=priority)
                .add_source(range(4))
                .pipe(probe.every_thread, concurrency=2, executor="process", name="kids")
            )
            with Pipeline(pools.attach(builder.config())) as pipeline:
                seen = {s for threads in pipeline for s in threads}
            assert seen == {_expected(priority, base, own_process=True)}, priority
    finally:
        pools.close()
    assert _consumer() == base
