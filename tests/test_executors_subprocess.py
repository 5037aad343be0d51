"""run_in_subprocess: a whole pipeline in one child process, streamed back."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

import context_workloads as cw
import ftpipe
import test_executors_workloads as w
from ftpipe import BrokenWorkerError, run_in_subprocess
from ftpipe.executors._persistent import SETTLE_S
from ftpipe.executors._subprocess import PipelineChild


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _segments() -> list[str]:
    return [e for e in os.listdir("/dev/shm") if e.startswith("ftpipe-")]


def test_results_stream_back_in_order() -> None:
    builder = ftpipe.PipelineBuilder().add_source(range(50)).pipe(w.square, concurrency=3)
    with run_in_subprocess(builder, buffer_size=4) as results:
        pid = results.pid
        assert pid != os.getpid()
        assert list(results) == [x * x for x in range(50)]
    assert not _alive(pid)


def test_numpy_results_come_through_shared_memory() -> None:
    builder = ftpipe.PipelineBuilder().add_source([1 << 18] * 6).pipe(w.numpy_array, concurrency=2)
    with run_in_subprocess(builder) as results:
        arrays = list(results)
    assert len(arrays) == 6 and all(a.shape == (1 << 18,) and a[0] == 7 for a in arrays)
    assert not [s for s in _segments() if s.startswith(f"ftpipe-{results.pid}-")]


def test_child_error_reraises_here_with_the_stage_note() -> None:
    builder = (
        ftpipe.PipelineBuilder()
        .add_source(range(10))
        .pipe(functools.partial(w.fail_on, 5), name="picky")
    )
    with run_in_subprocess(builder) as results:
        got = []
        with pytest.raises(ValueError, match="bad item 5") as info:
            for x in results:
                got.append(x)
    assert got == [0, 1, 2, 3, 4]  # every result before the failure, then the error
    assert any("picky" in note for note in getattr(info.value, "__notes__", []))
    assert not _alive(results.pid)


@pytest.mark.parametrize("kind", ["FileNotFoundError", "ConnectionResetError", "BrokenPipeError"])
def test_an_os_error_from_a_stage_arrives_after_the_results_before_it(kind: str) -> None:
    """A stage's OSError was taken for "the parent is gone" (exit 0, BrokenWorkerError).

    The child's loop sat in one ``except (EOFError, OSError)`` meant for the pipe to
    the parent: a ``FileNotFoundError`` or ``ConnectionError`` from the user's stage
    landed there, the child exited with status 0 and the consumer got
    ``BrokenWorkerError("pipeline subprocess ... exited with code 0 ...")``.
    """
    builder = (
        ftpipe.PipelineBuilder()
        .add_source(range(10))
        .pipe(functools.partial(w.os_error_on, 5, kind), name="reader")
    )
    got = []
    with run_in_subprocess(builder) as results, pytest.raises(OSError) as info:
        for x in results:
            got.append(x)
    assert type(info.value).__name__ == kind
    assert info.value.strerror == f"{kind} on item 5"
    assert info.value.filename == "/nonexistent/5"
    assert got == [0, 1, 2, 3, 4]  # everything before the failure, then the error
    assert any("reader" in note for note in getattr(info.value, "__notes__", []))
    assert "os_error_on" in str(info.value.__cause__)  # the child's traceback
    assert not _alive(results.pid)


def test_an_exception_carrying_an_array_is_read_before_its_segments_are_removed() -> None:
    """The consumer removed the child's shared memory, then read the exception from it.

    ``SubprocessPipeline.__next__`` called ``close()`` (which unlinks every segment of
    the child) before unpickling the child's exception; an exception whose arguments
    include a large numpy array travels through a segment, so the consumer got a
    ``FileNotFoundError`` for a ``/dev/shm`` name instead of the stage's error.
    """
    builder = ftpipe.PipelineBuilder().add_source([1]).pipe(w.fail_with_array, name="arrays")
    with run_in_subprocess(builder) as results, pytest.raises(ValueError, match="array") as info:
        next(results)
    assert info.value.args[0] == "array attached for 1"
    array = info.value.args[1]
    assert array.shape == (1 << 18,) and float(array.sum()) == 3.0 * (1 << 18)
    assert not [s for s in _segments() if s.startswith(results._prefix)]  # noqa: SLF001


def test_spawn_start_method() -> None:
    """``start_method="spawn"``: a fresh interpreter started by this process runs it."""
    builder = ftpipe.PipelineBuilder().add_source(range(30)).pipe(w.square, concurrency=2)
    with run_in_subprocess(builder, start_method="spawn", buffer_size=4) as results:
        # Started by this process (a forkserver child is the server's), right now.
        assert psutil.Process(results.pid).ppid() == os.getpid()
        assert list(results) == [x * x for x in range(30)]
    assert not _alive(results.pid)


def test_a_process_stage_inside_the_subprocess() -> None:
    """A pipeline whose stage runs on worker processes, itself in the pipeline subprocess."""
    builder = (
        ftpipe.PipelineBuilder()
        .add_source(range(40))
        .pipe(w.square, concurrency=2)
        .pipe(w.with_pid, executor="process", concurrency=2, name="in-workers")
    )
    with run_in_subprocess(builder, buffer_size=8) as results:
        out = list(results)
    assert [x for x, _ in out] == [x * x for x in range(40)]
    workers = {pid for _, pid in out}
    # The calls ran in the child's own worker processes: neither here nor in the child.
    assert workers and workers.isdisjoint({os.getpid(), results.pid})
    assert not _alive(results.pid) and not [p for p in workers if _alive(p)]
    assert not [s for s in _segments() if s.startswith(f"ftpipe-{results.pid}-")]


def test_numpy_arrays_from_a_process_stage_inside_the_subprocess() -> None:
    """Arrays made by the child's worker processes cross two shared-memory hops intact."""
    builder = (
        ftpipe.PipelineBuilder()
        .add_source([1 << 18] * 6)
        .pipe(w.numpy_array, executor="process", concurrency=2)
    )
    with run_in_subprocess(builder, buffer_size=2) as results:
        arrays = list(results)
    assert len(arrays) == 6 and all(
        a.shape == (1 << 18,) and float(a.sum()) == 7.0 * (1 << 18) for a in arrays
    )
    assert not [s for s in _segments() if s.startswith(f"ftpipe-{results.pid}-")]
    assert not [s for s in _segments() if s.startswith(results._prefix)]  # noqa: SLF001


def test_break_stops_and_reaps_the_child() -> None:
    builder = ftpipe.PipelineBuilder().add_source(range(10_000)).pipe(w.square)
    results = run_in_subprocess(builder, buffer_size=2)
    for i, _ in enumerate(results):
        if i == 3:
            break
    results.close()
    assert not _alive(results.pid)
    assert not [s for s in _segments() if s.startswith(f"ftpipe-{results.pid}-")]


def test_close_while_the_child_is_inside_a_slow_stage() -> None:
    builder = ftpipe.PipelineBuilder().add_source([5.0, 5.0]).pipe(w.sleep_then)
    results = run_in_subprocess(builder)
    time.sleep(0.5)
    start = time.monotonic()
    results.close()
    assert time.monotonic() - start < 3.0
    assert not _alive(results.pid)


def test_child_death_is_an_error_not_a_hang() -> None:
    builder = ftpipe.PipelineBuilder().add_source([0.2] * 100).pipe(w.sleep_then)
    results = run_in_subprocess(builder)
    next(results)
    os.kill(results.pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(BrokenWorkerError, match="SIGKILL"):
        for _ in results:
            pass
    assert time.monotonic() - start < 2.0


def test_what_cannot_move_is_refused_up_front() -> None:
    gen_source = ftpipe.PipelineBuilder().add_source(x for x in range(3)).pipe(w.square)
    with pytest.raises(TypeError, match="source.*generator"):
        run_in_subprocess(gen_source)
    lam = ftpipe.PipelineBuilder().add_source([1]).pipe(lambda x: x, name="lam")
    with pytest.raises(TypeError, match="stage 'lam'.*lambda"):
        run_in_subprocess(lam)
    with ThreadPoolExecutor(1) as pool:
        own = ftpipe.PipelineBuilder().add_source([1]).pipe(w.square, executor=pool, name="own")
        with pytest.raises(TypeError, match="stage 'own'.*user-supplied executor"):
            run_in_subprocess(own)
    with pytest.raises(ValueError, match="buffer_size"):
        run_in_subprocess(ftpipe.PipelineBuilder().add_source([1]), buffer_size=0)
    with pytest.raises(TypeError, match="buffer_size"):
        run_in_subprocess(ftpipe.PipelineBuilder().add_source([1]), buffer_size=2.0)  # type: ignore[arg-type]


KILLED_CONSUMER = """
import sys
sys.path.insert(0, {tests!r})
import test_executors_workloads as w
import ftpipe
if __name__ == "__main__":
    jobs = [(sys.argv[1], 60.0)] * 3
    builder = ftpipe.PipelineBuilder().add_source(jobs)
    builder.pipe(w.mark_then_sleep, concurrency=2, executor="process")
    child = ftpipe.run_in_subprocess(builder)
    print(child.pid, flush=True)
    next(child)
"""


# one marks directory per test: copies in other threads would mix their calls' marks
@pytest.mark.thread_unsafe
def test_the_pipeline_subprocess_and_its_workers_die_with_a_killed_parent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The pipeline subprocess, busy in a stage, outlived a SIGKILLed parent (and
    # kept its own worker processes running) until the calls ended.
    script = tmp_path / "killed_consumer.py"
    script.write_text(KILLED_CONSUMER.format(tests=os.path.dirname(__file__)))
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(marks)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        pids = [child, *w.wait_for_marks(str(marks), 2)]
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 3.0
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)]


# -- PipelineChild: one pipeline subprocess for pipeline after pipeline (epochs) ----------


def _epoch_builder(n: int = 20) -> ftpipe.PipelineBuilder:
    return (
        ftpipe.PipelineBuilder()
        .add_source(range(n))
        .pipe(w.square, concurrency=2)
        .pipe(w.slow_with_pid, executor="process", concurrency=2, name="load")
    )


def _gone(pids: set[int], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.timeout(90)
def test_a_pipeline_child_runs_every_epoch_in_one_process_with_the_same_workers() -> None:
    child = PipelineChild(buffer_size=4)
    assert child.pid is None  # started by the first run
    try:
        outs = []
        for _ in range(3):
            with child.run(_epoch_builder()) as results:
                assert results.pid == child.pid
                outs.append(list(results))
        pid, prefix = child.pid, child.shm_prefix
        assert pid is not None and prefix is not None and _alive(pid)
        assert [x for x, _ in outs[0]] == [x * x for x in range(20)]
        # Which worker ran an item may differ; the outputs and the two workers do not.
        assert [x for x, _ in outs[1]] == [x for x, _ in outs[2]] == [x for x, _ in outs[0]]
        workers = [{p for _, p in out} for out in outs]
        assert workers[0] == workers[1] == workers[2] and len(workers[0]) == 2
        assert pid not in workers[0]
    finally:
        child.close()
    assert _gone({pid, *workers[0]})
    assert not _segments_with(prefix) and not _segments_with(f"ftpipe-{pid}-")


def _reaped(pid: int) -> None:
    """Wait until ``pid`` is gone, zombie included: only then do its owners see it dead.

    (A forkserver child is reaped by the server, which then tells the parent; a
    process killed the instant an epoch starts fails that epoch, as one killed
    during it does.)
    """
    deadline = time.monotonic() + 5.0
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)


def _segments_with(prefix: str) -> list[str]:
    return [s for s in _segments() if s.startswith(prefix)]


@pytest.mark.timeout(90)
def test_stopping_an_epoch_keeps_the_child_and_the_next_epoch_is_whole() -> None:
    child = PipelineChild(buffer_size=2)
    try:
        results = child.run(ftpipe.PipelineBuilder().add_source(range(10_000)).pipe(w.square))
        assert [next(results) for _ in range(3)] == [0, 1, 4]
        pid = child.pid
        results.close()
        assert next(results, "ended") == "ended"
        assert [x for x, _ in child.run(_epoch_builder())] == [x * x for x in range(20)]
        # Abandoned without close(): the next run stops it all the same.
        abandoned = child.run(ftpipe.PipelineBuilder().add_source(range(10_000)).pipe(w.square))
        next(abandoned)
        assert list(child.run(ftpipe.PipelineBuilder().add_source(range(5)))) == list(range(5))
        assert next(abandoned, "ended") == "ended"  # a later run took over
        assert child.pid == pid
    finally:
        child.close()


@pytest.mark.timeout(90)
@pytest.mark.thread_unsafe  # one marks directory per test (see wait_for_marks)
def test_an_epoch_stopped_inside_a_slow_stage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The stop reaches a child blocked inside the pipeline; a stuck one is replaced."""
    child = PipelineChild()
    try:
        results = child.run(ftpipe.PipelineBuilder().add_source([0.5] * 4).pipe(w.sleep_then))
        pid = child.pid
        results.close()  # the child waits for a thread stage's call: half a second
        assert list(child.run(ftpipe.PipelineBuilder().add_source(range(3)))) == [0, 1, 2]
        assert child.pid == pid

        stuck = ftpipe.PipelineBuilder().add_source([(str(tmp_path), 60.0)] * 2)
        results = child.run(stuck.pipe(w.mark_then_sleep))
        w.wait_for_marks(str(tmp_path), 1)  # a thread stage's call of a minute runs
        results.close()
        start = time.monotonic()
        assert list(child.run(ftpipe.PipelineBuilder().add_source(range(3)))) == [0, 1, 2]
        assert time.monotonic() - start < SETTLE_S + 10.0
        assert child.pid != pid and _gone({pid})  # a minute-long call: a new child
    finally:
        child.close()


# In 4 threads at once too (tests-parallel): a child killed during an epoch was once
# reported as "exited with code 255" there, because another thread's Process.start()
# read its exit code at the same moment (see executors/_children.py).
@pytest.mark.timeout(90)
def test_an_error_ends_its_epoch_only_and_a_dead_child_is_replaced() -> None:
    child = PipelineChild()
    try:
        picky = (
            ftpipe.PipelineBuilder()
            .add_source(range(10))
            .pipe(functools.partial(w.fail_on, 5), name="picky")
        )
        got = []
        with pytest.raises(ValueError, match="bad item 5") as info:
            for x in child.run(picky):
                got.append(x)
        assert got == [0, 1, 2, 3, 4]
        assert any("picky" in note for note in getattr(info.value, "__notes__", []))
        pid = child.pid
        assert list(child.run(ftpipe.PipelineBuilder().add_source(range(3)))) == [0, 1, 2]
        assert child.pid == pid

        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        _reaped(pid)
        assert list(child.run(ftpipe.PipelineBuilder().add_source(range(3)))) == [0, 1, 2]
        assert child.pid != pid

        # Killed during an epoch: that epoch fails, as run_in_subprocess's does.
        results = child.run(ftpipe.PipelineBuilder().add_source([0.2] * 100).pipe(w.sleep_then))
        next(results)
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        with pytest.raises(BrokenWorkerError, match="SIGKILL"):
            for _ in results:
                pass
        assert list(child.run(ftpipe.PipelineBuilder().add_source(range(3)))) == [0, 1, 2]
    finally:
        child.close()
    with pytest.raises(RuntimeError, match="closed"):
        child.run(ftpipe.PipelineBuilder().add_source([1]))


@pytest.mark.timeout(90)
def test_a_worker_killed_between_epochs_is_replaced_in_the_child() -> None:
    child = PipelineChild()
    try:
        first = {p for _, p in child.run(_epoch_builder())}
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        _reaped(victim)
        out = list(child.run(_epoch_builder()))
        assert [x for x, _ in out] == [x * x for x in range(20)]
        assert victim not in {p for _, p in out}
    finally:
        child.close()


@pytest.mark.timeout(60)
@pytest.mark.thread_unsafe  # one marks directory per test (see wait_for_marks)
def test_closing_a_pipeline_child_mid_epoch_is_prompt_and_leaves_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    child = PipelineChild()
    builder = ftpipe.PipelineBuilder().add_source([(str(tmp_path), 60.0)] * 3)
    builder.pipe(w.mark_then_sleep, concurrency=2, executor="process")
    results = child.run(builder)
    workers = set(w.wait_for_marks(str(tmp_path), 2))
    pid, prefix = child.pid, child.shm_prefix
    assert pid is not None and prefix is not None
    start = time.monotonic()
    child.close()
    assert time.monotonic() - start < 3.0
    assert next(results, "ended") == "ended"
    assert _gone({pid, *workers})
    assert not _segments_with(prefix) and not _segments_with(f"ftpipe-{pid}-")


def _variable_builder() -> ftpipe.PipelineBuilder:
    import context_workloads as cw

    return (
        ftpipe.PipelineBuilder(seed=4)
        .add_source(range(50))
        .pipe(cw.spread, concurrency=2, name="spread")
        .pipe(cw.not_multiple_of_five, on_error="skip", name="skip")
        .aggregate(3)
    )


def test_a_subprocess_pipeline_checkpoints_where_its_consumer_is_not_where_the_child_is() -> None:
    """The child runs ahead (buffer_size); the checkpoint is the last item taken's."""
    with _variable_builder().build() as whole:
        full = list(whole)
    with run_in_subprocess(_variable_builder(), buffer_size=8, checkpoints=True) as sub:
        assert sub.state_dict()["consumed"] == 0  # before the first item: the start
        head = [next(sub) for _ in range(5)]
        time.sleep(0.2)  # the child is well ahead by now: it must not matter
        state = sub.state_dict()
    assert state["consumed"] == 5
    with _variable_builder().build(state=state) as here:
        assert head + list(here) == full
    with run_in_subprocess(_variable_builder(), state=state, checkpoints=True) as there:
        rest = list(there)
        assert there.state_dict()["consumed"] == len(full)
    assert head + rest == full


def test_an_unordered_subprocess_pipeline_resumes_with_nothing_lost_or_repeated() -> None:
    def make() -> ftpipe.PipelineBuilder:
        return (
            ftpipe.PipelineBuilder(seed=1)
            .add_source(range(60))
            .pipe(cw.late_seeded, concurrency=4, ordered=False, name="late")
        )

    with make().build() as whole:
        full = sorted(whole)
    with run_in_subprocess(make(), checkpoints=True, buffer_size=4) as sub:
        head = [next(sub) for _ in range(9)]
        state = sub.state_dict()
    with run_in_subprocess(make(), state=state) as rest:
        assert sorted(head + list(rest)) == full


def test_a_subprocess_pipeline_that_cannot_checkpoint_says_why() -> None:
    builder = ftpipe.PipelineBuilder().add_source(range(9)).pipe(abs, ordered=False, name="a")
    builder.pipe(abs, ordered=False, name="b")
    with run_in_subprocess(builder, checkpoints=True) as sub:
        next(sub)
        with pytest.raises(ValueError, match="stages 'a', 'b' have ordered=False"):
            sub.state_dict()
    with run_in_subprocess(ftpipe.PipelineBuilder().add_source(range(9))) as sub:
        next(sub)
        with pytest.raises(ValueError, match="pass checkpoints=True"):
            sub.state_dict()
