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

import ftpipe
import test_executors_workloads as w
from ftpipe import BrokenWorkerError, run_in_subprocess


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
    assert got == list(range(len(got))) and len(got) <= 5  # the engine may drop in-flight items
    assert any("picky" in note for note in getattr(info.value, "__notes__", []))
    assert not _alive(results.pid)


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
