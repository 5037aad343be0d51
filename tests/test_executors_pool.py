"""WorkerPool's lifecycle, the same for every executor: interpreter exit, collection."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import BrokenExecutor

import psutil
import pytest

import ftpipe
import test_executors_workloads as w
from ftpipe.executors import subinterpreters_available

TESTS = os.path.dirname(os.path.abspath(__file__))

KINDS = [
    "ThreadExecutor",
    "ProcessExecutor",
    pytest.param(
        "InterpreterExecutor",
        marks=pytest.mark.skipif(
            not subinterpreters_available(), reason="isolated subinterpreters need CPython 3.13+"
        ),
    ),
]

EXIT_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import test_executors_workloads as w
import ftpipe
if __name__ == "__main__":
    ex = getattr(ftpipe, sys.argv[1])(2)
    for i in range(6):  # two run at once, four wait in the queue
        ex.submit(w.print_after, 0.3, f"call-{{i}}")
    if sys.argv[2] == "shutdown-nowait":
        ex.shutdown(wait=False)
    # and the script ends here
"""


@pytest.mark.parametrize("how", ["no-shutdown", "shutdown-nowait"])
@pytest.mark.parametrize("kind", KINDS)
def test_exit_waits_for_every_submitted_call(tmp_path, kind: str, how: str) -> None:  # type: ignore[no-untyped-def]
    # The Executor.shutdown contract: the program does not exit until all pending
    # futures are done.  The exit hook used to cancel queued calls (and kill worker
    # processes after 2 s); after shutdown(wait=False) it did not see the pool at all.
    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT.format(tests=TESTS))
    proc = subprocess.run(
        [sys.executable, str(script), kind, how], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == [f"call-{i}" for i in range(6)], proc.stderr
    assert proc.stderr == ""


SUBMIT_AT_EXIT = """
import atexit, sys
@atexit.register
def run_last():  # runs after ftpipe's exit hook (registered later, so run earlier)
    try:
        ex.submit(id, None)
    except RuntimeError as exc:
        print("refused:", exc)
import ftpipe
if __name__ == "__main__":
    ex = getattr(ftpipe, sys.argv[1])(2)
    ex.submit(id, 42).result()
"""


@pytest.mark.parametrize("kind", KINDS)
def test_submit_after_the_exit_hook_is_refused(tmp_path, kind: str) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "late.py"
    script.write_text(SUBMIT_AT_EXIT)
    proc = subprocess.run(
        [sys.executable, str(script), kind], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "refused: cannot schedule new futures after interpreter shutdown" in proc.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_a_dropped_executor_stops_its_workers(kind: str) -> None:
    # Worker threads hold only the pool's state, so nothing woke them when the
    # pool was collected: threads, child processes and subinterpreters lived on
    # until the process exited.  Now, as with ThreadPoolExecutor, collecting the
    # pool wakes them: they finish what was queued, then stop.
    name = f"dropped-{kind}-{threading.get_ident()}"  # its own, beside copies in other threads
    ex = getattr(ftpipe, kind)(2, name=name)
    futures = [ex.submit(w.square, i) for i in range(6)]
    assert futures[0].result(timeout=60) == 0
    pids = ex.worker_pids() if isinstance(ex, ftpipe.ProcessExecutor) else []
    threads = [t for t in threading.enumerate() if t.name.startswith(f"{name}-")]
    assert threads
    del ex
    gc.collect()
    assert [f.result(timeout=60) for f in futures] == [i * i for i in range(6)]
    deadline = time.monotonic() + 5.0
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not [t.name for t in threads if t.is_alive()]
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_submit_is_refused_as_soon_as_a_call_reports_a_broken_executor() -> None:
    # A call failing with BrokenExecutor must mean the executor is broken already:
    # the worker used to fail the call's future first and mark the pool broken
    # after, so code reacting to the failure (here a done callback, which runs
    # inside set_exception) could still submit -- a call that was then lost.
    ex = ftpipe.ProcessExecutor(1, name="breaks")
    ex.submit(w.square, 1).result(timeout=60)  # started: the kill below is the only wait
    seen: list[str] = []

    def resubmit(_: object) -> None:
        try:
            ex.submit(w.square, 2)
            seen.append("accepted")
        except BrokenExecutor:
            seen.append("refused")

    doomed = ex.submit(w.kill_self)
    doomed.add_done_callback(resubmit)
    with pytest.raises(BrokenExecutor):
        doomed.result(timeout=60)
    ex.shutdown()
    assert seen == ["refused"]
