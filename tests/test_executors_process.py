"""ProcessExecutor: persistent workers, shared-memory transport, broken workers, no leaks."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor

import numpy as np
import psutil
import pytest

import ftpipe
import test_executors_workloads as w
from ftpipe.executors import BrokenWorkerError, ProcessExecutor, RemoteTraceback


def _segments(prefix: str) -> list[str]:
    return [e for e in os.listdir("/dev/shm") if e.startswith(prefix)]


def _all_gone(pids: list[str], seconds: float) -> bool:
    """Wait up to ``seconds`` for every process in ``pids`` to exit; whether they all did."""
    deadline = time.monotonic() + seconds
    while any(_running(int(p)) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _children() -> set[int]:
    """Our live descendants, minus the forkserver and resource tracker (they outlive executors)."""
    me = os.getpid()
    pids = set()
    for p in psutil.Process().children(recursive=True):
        try:
            helper = p.ppid() == me and any(
                k in " ".join(p.cmdline()) for k in ("forkserver", "resource_tracker")
            )
            if not helper and p.status() != psutil.STATUS_ZOMBIE:
                pids.add(p.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


@pytest.fixture(scope="module")
def shared() -> Iterator[ProcessExecutor]:
    """Two warm workers shared by the tests that do not break them."""
    ex = ProcessExecutor(2, name="shared-stage")
    # Start both workers now, so their threads predate each test's thread-leak check.
    list(ex.map(w.sleep_then, [0.2, 0.2]))
    assert len(ex.worker_pids()) == 2
    yield ex
    ex.shutdown()
    assert _segments(ex.shm_prefix) == []


def test_map_runs_in_other_processes(shared: ProcessExecutor) -> None:
    assert list(shared.map(w.square, range(10))) == [x * x for x in range(10)]
    pids = set(shared.map(w.getpid, range(8)))
    assert os.getpid() not in pids and pids <= set(shared.worker_pids())


def test_callable_objects_and_exceptions(shared: ProcessExecutor) -> None:
    assert shared.submit(w.Adder(5), 1).result() == 6
    with pytest.raises(ValueError, match="boom on 7") as info:
        shared.submit(w.boom, 7).result()
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in worker process" in str(info.value.__cause__) and "boom" in str(info.value.__cause__)


def test_numpy_round_trip_through_shared_memory(shared: ProcessExecutor) -> None:
    a = np.arange(2 << 20, dtype=np.float32)  # 8 MiB
    out = shared.submit(w.numpy_double, a).result()
    assert np.array_equal(out, a * 2) and out.flags.writeable
    assert shared.submit(w.numpy_sum, a).result() == float(a.sum())
    big = os.urandom(1 << 20)
    assert shared.submit(w.identity, big).result() == big
    # Segments are kept for reuse while the executor lives (the fixture checks they go).
    assert len(_segments(shared.shm_prefix)) <= 4 * 8


def test_unpicklable_argument_or_result_fails_only_that_call(shared: ProcessExecutor) -> None:
    import threading

    with pytest.raises(TypeError, match="cannot send"):
        shared.submit(w.identity, threading.Lock()).result()
    with pytest.raises(TypeError, match="cannot be pickled back"):
        shared.submit(w.unpicklable_result).result()
    assert shared.submit(w.square, 3).result() == 9


def test_initializer_runs_in_each_worker() -> None:
    with ProcessExecutor(1, initializer=w.set_state, initargs=("ready",)) as ex:
        assert ex.submit(w.get_state).result() == "ready"


def test_failing_initializer_breaks_the_executor() -> None:
    with (
        ProcessExecutor(1, initializer=w.failing_initializer, name="init-stage") as ex,
        pytest.raises(BrokenWorkerError, match="init-stage.*initializer says no"),
    ):
        ex.submit(w.square, 2).result(timeout=30)


@pytest.mark.parametrize(
    ("fn", "arg", "expected"),
    [
        (w.kill_self, None, r"killed by signal SIGKILL \(exit code -9\)"),
        (w.exit_with, 3, "exited with code 3"),
    ],
)
# counts this process's children and times worker start-up: alone, not beside 3 copies
@pytest.mark.thread_unsafe
def test_dead_worker_breaks_the_executor_quickly(fn, arg, expected) -> None:  # type: ignore[no-untyped-def]
    before = _children()
    ex = ProcessExecutor(1, name="doomed-stage")
    ex.submit(w.square, 1).result(timeout=30)  # warm: measure the death, not the start
    doomed = ex.submit(fn, arg)
    queued = [ex.submit(w.square, i) for i in range(3)]
    start = time.monotonic()
    with pytest.raises(BrokenWorkerError, match=f"doomed-stage.*{expected}") as info:
        doomed.result(timeout=10)
    assert time.monotonic() - start < 2.0
    assert isinstance(info.value, BrokenExecutor)
    assert info.value.name == "doomed-stage" and info.value.exitcode is not None
    for f in queued:
        with pytest.raises(BrokenWorkerError):
            f.result(timeout=5)
    with pytest.raises(BrokenWorkerError):
        ex.submit(w.square, 1)
    ex.shutdown()
    assert _children() <= before
    assert _segments(ex.shm_prefix) == []


# shares a module-scoped executor/endpoint or counts process-wide threads, workers or segments
@pytest.mark.thread_unsafe
def test_shutdown_reaps_every_worker() -> None:
    before = _children()
    ex = ProcessExecutor(2)
    list(ex.map(w.sleep_then, [0.1, 0.1]))
    pids = ex.worker_pids()
    assert set(pids) <= _children()
    ex.shutdown()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
    assert _children() <= before


def test_fork_is_refused() -> None:
    with pytest.raises(ValueError, match="fork"):
        ProcessExecutor(1, start_method="fork")


def test_spawn_works() -> None:
    with ProcessExecutor(1, start_method="spawn") as ex:
        assert ex.submit(w.square, 5).result(timeout=60) == 25


SCRIPT = """
import numpy as np, sys
sys.path.insert(0, {tests!r})
import test_executors_workloads as w
from ftpipe.executors import ProcessExecutor
if __name__ == "__main__":
    with ProcessExecutor(2) as ex:
        for out in ex.map(w.numpy_double, [np.ones(1 << 20)] * 4):
            assert out[0] == 2
    ex = ProcessExecutor(1)
    f = ex.submit(w.kill_self)
    try:
        f.result()
    except Exception as e:
        print("broken:", type(e).__name__)
    ex.shutdown()
    # An executor nobody shut down: the exit hook must stop it.
    leaked = ProcessExecutor(1)
    leaked.submit(w.square, 2).result()
    # A pipeline left running, its process stage in a long call: exit stops
    # pipelines without waiting for their calls (a user's executor is waited for).
    import ftpipe
    stuck = ftpipe.PipelineBuilder().add_source([0, 600]).pipe(w.sleep_then, executor="process")
    next(iter(stuck.build()))
    print("done")
"""


def test_no_resource_tracker_warnings_and_clean_exit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__)))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    # The stuck call sleeps 600 s: well under a minute means its worker was killed at exit
    # (30 s was too tight with four copies of this script running at once on 2 cores).
    assert time.monotonic() - start < 50
    assert proc.returncode == 0, proc.stderr
    assert "broken: BrokenWorkerError" in proc.stdout and "done" in proc.stdout
    assert "resource_tracker" not in proc.stderr and "leaked" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


KILLED_PARENT = """
import numpy as np, os, signal, sys
sys.path.insert(0, {tests!r})
import test_executors_workloads as w
from ftpipe.executors import ProcessExecutor
if __name__ == "__main__":
    ex = ProcessExecutor(2)
    kept = list(ex.map(w.numpy_double, [np.ones(1 << 18)] * 4))  # segments in use on both sides
    print(ex.shm_prefix, *ex.worker_pids(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_workers_clean_up_when_the_parent_is_killed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "killed.py"
    script.write_text(KILLED_PARENT.format(tests=os.path.dirname(__file__)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    prefix, *pids = proc.stdout.split()
    assert _all_gone(pids, 5)  # the orphans see EOF on their pipe and exit
    assert _segments(prefix) == []


def _kill_on_3(x: int) -> int:
    if x == 3:
        w.kill_self()
    return x


# counts this process's children and times worker start-up: alone, not beside 3 copies
@pytest.mark.thread_unsafe
def test_a_killed_worker_fails_the_pipeline_with_the_stage_name() -> None:
    before = _children()
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(1000))
        .pipe(_kill_on_3, concurrency=2, executor="process", name="fragile")
        .build()
    )
    start = time.monotonic()
    with pipeline, pytest.raises(BrokenWorkerError, match="'fragile'.*SIGKILL") as info:
        for _ in pipeline:
            pass
    assert time.monotonic() - start < 10.0  # includes starting two workers
    assert any("fragile" in note for note in getattr(info.value, "__notes__", []))
    assert _children() <= before


SIGTERM_GROUP = """
import numpy as np, os, sys
sys.path.insert(0, {tests!r})
import test_executors_workloads as w
import ftpipe
from ftpipe.executors import ProcessExecutor
if __name__ == "__main__":
    ex = ProcessExecutor(2, start_method=sys.argv[1])
    kept = list(ex.map(w.numpy_double, [np.ones(1 << 18)] * 4))  # segments in use on both sides
    builder = ftpipe.PipelineBuilder().add_source([np.ones(1 << 18)] * 64).pipe(w.numpy_double)
    child = ftpipe.run_in_subprocess(builder, buffer_size=4)
    first = next(child)
    print(*ex.worker_pids(), child.pid, flush=True)
    sys.stdin.read()  # until the whole group is terminated
"""


# sends SIGTERM to a process group of its own making; counts /dev/shm names
@pytest.mark.thread_unsafe
@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_sigterm_to_the_whole_process_group_leaves_no_segments(tmp_path, start_method) -> None:  # type: ignore[no-untyped-def]
    # A job scheduler (or `timeout`) stopping a job sends SIGTERM to every process in
    # it at once: the parent dies without cleaning up, so the workers must.  (The
    # fork server dies too, and the spawn workers' parent: an idle worker must not
    # be SIGKILLed by PR_SET_PDEATHSIG before it has removed its segments.)
    script = tmp_path / "group.py"
    script.write_text(SIGTERM_GROUP.format(tests=os.path.dirname(__file__)))
    proc = subprocess.Popen(
        [sys.executable, str(script), start_method],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.communicate(timeout=30)[1]
    pids = line.split()
    mine = f"ftpipe-{proc.pid}-"  # the executor's and the pipeline subprocess's segments
    assert _segments(mine)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    assert _all_gone(pids, 10)
    assert _segments(mine) == []
    assert _segments(f"ftpipe-{pids[-1]}-") == []  # the pipeline subprocess's own


# counts this process's children
@pytest.mark.thread_unsafe
def test_close_does_not_wait_for_a_long_call_and_kills_its_worker(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # close() used to shut the stage's executor down with wait=True: it joined
    # worker threads blocked on children still inside their 20 s calls.
    before = _children()
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source([(str(tmp_path), 20.0)] * 2)
        .pipe(w.mark_then_sleep, concurrency=2, executor="process", name="long")
        .build()
    )
    iter(pipeline)  # starts it
    pids = w.wait_for_marks(str(tmp_path), 2)
    start = time.monotonic()
    pipeline.close()
    assert time.monotonic() - start < 1.5
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
    assert _children() <= before


CTRL_C_LONG_CALL = """
import signal, sys
# Started from a background job, SIGINT arrives ignored: restore Python's handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {tests!r})
import test_executors_workloads as w
import ftpipe
if __name__ == "__main__":
    source = [(sys.argv[1], 60.0)] * 2
    stage = ftpipe.PipelineBuilder().add_source(source).pipe(
        w.mark_then_sleep, concurrency=2, executor="process"
    )
    with stage.build() as pipeline:
        for _ in pipeline:
            pass
"""


# one marks directory per test: copies in other threads would mix their calls' marks
@pytest.mark.thread_unsafe
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_a_long_process_call_exits_promptly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_LONG_CALL.format(tests=os.path.dirname(__file__)))
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marks)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        pids = w.wait_for_marks(str(marks), 2)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - start < 5.0  # not the 60 s of the calls
    assert b"KeyboardInterrupt" in err, err
    assert _all_gone([str(p) for p in pids], 2)


KILLED_MID_CALL = """
import sys
sys.path.insert(0, {tests!r})
import test_executors_workloads as w
import ftpipe
if __name__ == "__main__":
    marks, how = sys.argv[1], sys.argv[2]
    jobs = [(marks, 60.0)] * 2
    if how == "pipeline":  # forkserver: the workers' parent is the fork server
        stage = ftpipe.PipelineBuilder().add_source(jobs).pipe(
            w.mark_then_sleep, concurrency=2, executor="process"
        )
        for _ in stage.build():
            pass
    else:  # spawn: the workers are this process's own children
        fn = w.mark_then_hold_the_gil if how.endswith("holding-the-gil") else w.mark_then_sleep
        ex = ftpipe.ProcessExecutor(2, start_method="spawn")
        for f in [ex.submit(fn, job) for job in jobs]:
            f.result()
"""


# one marks directory per test: copies in other threads would mix their calls' marks
@pytest.mark.thread_unsafe
@pytest.mark.parametrize("how", ["pipeline", "spawn-executor", "spawn-executor-holding-the-gil"])
def test_workers_die_with_a_parent_killed_mid_call(tmp_path, how: str) -> None:  # type: ignore[no-untyped-def]
    # Worker processes used to outlive a SIGKILLed parent while inside a call:
    # they noticed only when the call returned and the reply found no reader.
    # Holding the GIL (a GIL build), only PR_SET_PDEATHSIG can stop a spawn worker.
    script = tmp_path / "killed_mid_call.py"
    script.write_text(KILLED_MID_CALL.format(tests=os.path.dirname(__file__)))
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(marks), how])
    try:
        pids = w.wait_for_marks(str(marks), 2)
    finally:
        proc.kill()
        proc.wait()
    assert _all_gone([str(p) for p in pids], 3)


def _read_together(proc: object, readers: int = 2) -> list[int | None]:
    """``proc.exitcode`` read by ``readers`` threads released at the same moment."""
    import threading

    together = threading.Barrier(readers)
    codes: list[int | None] = []

    def read() -> None:
        together.wait()
        codes.append(proc.exitcode)  # type: ignore[attr-defined]

    threads = [threading.Thread(target=read) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


@pytest.mark.timeout(120)
@pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods(),
    reason="the forkserver reports exit codes through a pipe",
)
def test_an_exit_code_read_by_two_threads_at_once_is_the_real_one() -> None:
    # Any Process.start() polls every live child; when that meets the owner's own
    # read of a dead child's exit code, multiprocessing's forkserver Popen let one of
    # the two read end-of-file and say 255 (a SIGKILLed worker "exited with code 255").
    from ftpipe.executors._children import new_process

    ctx = multiprocessing.get_context("forkserver")
    seen = []
    for _ in range(40):
        proc = new_process(ctx, target=time.sleep, args=(60,))
        proc.start()
        os.kill(proc.pid, signal.SIGKILL)
        multiprocessing.connection.wait([proc.sentinel])  # dead, its code not read yet
        seen.append((*_read_together(proc), proc.exitcode))
        proc.join()
        proc.close()
    assert {code for reads in seen for code in reads} == {-signal.SIGKILL}, seen
