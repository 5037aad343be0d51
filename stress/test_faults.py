"""Fault injection: failures in the source, a stage and the consumer; Ctrl-C by a real
SIGINT; garbage collection of an abandoned pipeline; interpreter exit with a pipeline
running; a process worker and a pipeline subprocess killed with SIGKILL.

Each test asserts the error that is due (type, and where it came from), that nothing
hangs (every wait is bounded), and — through the autouse fixture in conftest.py —
that no thread, child process or /dev/shm segment is left behind.
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from concurrent.futures import BrokenExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _stage_fns import (
    ConsumerFault,
    Endless,
    FailingSource,
    SourceFault,
    StageFault,
    async_stage,
    endless,
    gen_stage,
    pid_after,
    plain_stage,
    sleep_then,
)
from _stress_support import available_executor_kinds, bounded, run_in_subprocess

import ftpipe
from conftest import register_child

HERE = Path(__file__).resolve().parent
# A stopped pipeline whose stages return promptly must be gone well within this.
PROMPT_S = 10.0


def ftpipe_notes(exc: BaseException) -> list[str]:
    return [n for n in getattr(exc, "__notes__", []) if n.startswith("ftpipe:")]


def needs_kind(kind: str) -> None:
    if kind not in available_executor_kinds():
        pytest.skip(
            f"executor kind {kind!r} is not available here (not registered, or no subinterpreters before 3.13)"
        )


# -- exceptions in the source, a stage, the consumer -----------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
def test_source_exception_reaches_consumer_with_note(concurrency: int) -> None:
    source = FailingSource(list(range(100)), fail_at=37)
    b = (
        ftpipe.PipelineBuilder()
        .add_source(source)
        .pipe(functools.partial(plain_stage, 1, 0, 0.0), concurrency=concurrency)
    )
    got: list[Any] = []

    def body() -> None:
        with b.build() as pipeline:
            for x in pipeline:
                got.append(x)

    with pytest.raises(SourceFault) as info:
        bounded(body, PROMPT_S)
    assert any("source" in n for n in ftpipe_notes(info.value)), info.value.__notes__
    # Every item the source yielded before failing comes out, then the error.
    assert got == [(i * 31 + 1) % 100_003 for i in range(37)]


@pytest.mark.parametrize("kind", ["plain", "gen", "async"])
def test_stage_exception_is_the_original_with_its_traceback(kind: str) -> None:
    fn = {"plain": plain_stage, "gen": gen_stage, "async": async_stage}[kind]
    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(200))
        .pipe(functools.partial(fn, 0, 50, 0.0), concurrency=3, name="boom")  # fails on 0, 50, ...
    )

    def body() -> None:
        with b.build() as pipeline:
            for _ in pipeline:
                pass

    with pytest.raises(StageFault) as info:
        bounded(body, PROMPT_S)
    notes = ftpipe_notes(info.value)
    assert len(notes) == 1 and "'boom'" in notes[0], notes
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert fn.__name__ in frames, (
        f"the stage function's frame is missing from the traceback: {frames}"
    )


def test_keyboard_interrupt_raised_in_a_stage_reaches_consumer() -> None:
    def interrupt(x: int) -> int:
        if x == 5:
            raise KeyboardInterrupt
        return x

    b = ftpipe.PipelineBuilder().add_source(range(100)).pipe(interrupt, on_error="skip", name="ki")

    def body() -> None:
        with b.build() as pipeline:
            list(pipeline)

    # skip applies to Exceptions only: a KeyboardInterrupt always stops the pipeline.
    with pytest.raises(KeyboardInterrupt):
        bounded(body, PROMPT_S)


@pytest.mark.parametrize("upstream", ["blocked-on-full-buffers", "slow-stage", "async"])
def test_consumer_exception_stops_everything_promptly(upstream: str) -> None:
    b = ftpipe.PipelineBuilder().add_source(Endless())
    if upstream == "blocked-on-full-buffers":
        b.pipe(functools.partial(plain_stage, 1, 0, 0.0), concurrency=4, buffer_size=1)
        b.aggregate(3).disaggregate()
    elif upstream == "slow-stage":
        b.pipe(functools.partial(sleep_then, 0.2), concurrency=4)
    else:
        b.pipe(functools.partial(async_stage, 1, 0, 0.001), concurrency=8)
    b.add_sink(buffer_size=1)
    pipeline = b.build()
    start = time.monotonic()

    def body() -> None:
        with pipeline:
            for i, _ in enumerate(pipeline):
                if i == 3:
                    raise ConsumerFault("the training loop failed")

    with pytest.raises(ConsumerFault) as info:
        bounded(body, PROMPT_S)
    assert not ftpipe_notes(info.value)
    assert time.monotonic() - start < PROMPT_S
    assert not [t for t in threading.enumerate() if t.name.startswith("ftpipe")]


# -- garbage collection of an abandoned pipeline ---------------------------------------------


def _abandon(b: ftpipe.PipelineBuilder, take: int) -> list[threading.Thread]:
    """Start a pipeline, take ``take`` items, drop it without closing; return its threads."""
    before = set(threading.enumerate())
    pipeline = b.build()
    it = iter(pipeline)
    for _ in range(take):
        next(it)
    threads = [t for t in threading.enumerate() if t not in before]
    del it, pipeline
    return threads


@pytest.mark.parametrize(
    "stages", ["plain", "generator", "async", "aggregate", "user-pool", "process", "interpreter"]
)
def test_garbage_collection_stops_an_unclosed_pipeline(stages: str) -> None:
    pools: list[ThreadPoolExecutor] = []
    b = ftpipe.PipelineBuilder().add_source(endless())
    if stages == "plain":
        b.pipe(functools.partial(plain_stage, 1, 0, 0.0), concurrency=4).pipe(str, ordered=False)
    elif stages == "generator":
        b.pipe(functools.partial(gen_stage, 1, 0, 0.0), concurrency=2)
    elif stages == "async":
        b.pipe(functools.partial(async_stage, 1, 0, 0.0), concurrency=4)
    elif stages == "aggregate":
        b.aggregate(4).pipe(len).aggregate(2)
    elif stages == "user-pool":
        pools.append(ThreadPoolExecutor(2, thread_name_prefix="stress-user-pool"))
        b.pipe(functools.partial(plain_stage, 1, 0, 0.0), executor=pools[0], concurrency=2)
    else:
        needs_kind(stages)
        b.pipe(functools.partial(plain_stage, 1, 0, 0.0), executor=stages, concurrency=2)
    b.add_sink(buffer_size=2)

    threads = bounded(lambda: _abandon(b, 5), PROMPT_S)
    assert any(t.name.startswith("ftpipe") for t in threads), [t.name for t in threads]
    gc.collect()
    deadline = time.monotonic() + PROMPT_S
    for thread in threads:
        if thread.name.startswith("stress-user-pool"):
            continue  # the user's executor is the user's to shut down
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive() and not t.name.startswith("stress-user-pool")]
    for pool in pools:
        pool.shutdown(wait=True)
    assert not alive, f"threads of a collected pipeline still running after {PROMPT_S}s: {alive}"


# -- child Pythons: SIGINT and interpreter exit ----------------------------------------------


def child(script: str) -> subprocess.Popen[str]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    )
    env.pop("FTPIPE_DIAGNOSTIC_MODE", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    register_child(proc.pid)  # its shared-memory segments are ours to account for
    return proc


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, str, float]:
    start = time.monotonic()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The child registered faulthandler on SIGUSR1: get every thread's stack first.
        proc.send_signal(signal.SIGUSR1)
        try:
            out, err = proc.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(
            f"child did not exit within {timeout}s (hang)\nstdout:\n{out}\nstderr:\n{err[-3000:]}"
        )
    return proc.returncode, out, err, time.monotonic() - start


def wait_ready(proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """Wait until the child prints its ``ready`` line (a blocking read, bounded by a timer)."""
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        line = proc.stdout.readline() if proc.stdout else ""
    finally:
        timer.cancel()
    if line.strip() != "ready":
        _, err = proc.communicate()
        pytest.fail(f"child never got ready: {line!r}\n{err[-3000:]}")


PIPELINES = {
    "thread": "b.pipe(functools.partial(plain_stage, 1, 0, 0.0), concurrency=4)",
    "slow-stage": "b.pipe(functools.partial(sleep_then, 0.3), concurrency=2)",
    "generator": "b.pipe(functools.partial(gen_stage, 1, 0, 0.0), concurrency=2).aggregate(3)",
    "async": "b.pipe(functools.partial(async_stage, 1, 0, 0.001), concurrency=8)",
    "process": "b.pipe(functools.partial(plain_stage, 1, 0, 0.0), executor='process', concurrency=2)",
    "interpreter": "b.pipe(functools.partial(plain_stage, 1, 0, 0.0), executor='interpreter', concurrency=2)",
}

PRELUDE = """
import faulthandler, functools, signal, sys, time
faulthandler.register(signal.SIGUSR1, all_threads=True)  # the parent asks for stacks on a hang
# A runner started as a background job passes SIGINT on ignored; Python then installs
# no KeyboardInterrupt handler.  Ctrl-C is what these children test: restore it.
signal.signal(signal.SIGINT, signal.default_int_handler)
import ftpipe
try:
    import ftpipe.executors
except ImportError:
    pass
from _stage_fns import plain_stage, gen_stage, async_stage, sleep_then, Endless
"""


@pytest.mark.parametrize("consumer", ["busy", "waiting"])
@pytest.mark.parametrize("stages", ["thread", "slow-stage", "async", "process"])
def test_sigint_stops_a_child_running_a_pipeline(stages: str, consumer: str) -> None:
    if stages in ("process", "interpreter"):
        needs_kind(stages)
    # "busy": the consumer is in Python code when SIGINT lands; "waiting": it is
    # blocked inside the pipeline waiting for the next item.
    work = "sum(range(2000))" if consumer == "busy" else "None"
    slow = "" if consumer == "busy" else "b.pipe(functools.partial(sleep_then, 0.5))"
    proc = child(
        PRELUDE
        + f"""
if __name__ == "__main__":
    b = ftpipe.PipelineBuilder().add_source(Endless())
    {PIPELINES[stages]}
    {slow}
    with b.build() as pipeline:
        for i, x in enumerate(pipeline):
            if i == 2:
                print("ready", flush=True)
            {work}
"""
    )
    wait_ready(proc)
    time.sleep(0.2)  # let the child get back into its loop / wait
    proc.send_signal(signal.SIGINT)
    code, out, err, elapsed = finish(proc, 30.0)
    assert code != 0, f"child exited with 0 after SIGINT\n{err[-2000:]}"
    assert "KeyboardInterrupt" in err, err[-3000:]
    assert elapsed < PROMPT_S, f"child took {elapsed:.1f}s to exit after SIGINT"


@pytest.mark.parametrize("how", ["iterating", "with-block-exit-skipped", "consumer-thread"])
@pytest.mark.parametrize(
    "stages", ["thread", "slow-stage", "generator", "async", "process", "interpreter"]
)
def test_interpreter_exit_with_a_pipeline_running(stages: str, how: str) -> None:
    if stages in ("process", "interpreter"):
        needs_kind(stages)
    if how == "iterating":
        body = """
    it = iter(b.build())
    for _ in range(3):
        next(it)
"""
    elif how == "with-block-exit-skipped":
        # Entered but never left: __exit__ never runs, the pipeline is still referenced.
        body = """
    pipeline = b.build()
    pipeline.__enter__()
    for _, x in zip(range(3), pipeline):
        pass
"""
    else:
        # A daemon consumer thread still iterating when the main thread ends.
        body = """
    import threading
    pipeline = b.build()
    got = threading.Event()
    def consume():
        for i, x in enumerate(pipeline):
            if i == 3:
                got.set()
    threading.Thread(target=consume, daemon=True).start()
    got.wait(30)
"""
    proc = child(
        PRELUDE
        + f"""
if __name__ == "__main__":
    b = ftpipe.PipelineBuilder().add_source(Endless())
    {PIPELINES[stages]}
    b.add_sink(buffer_size=2)
{body}
    print("leaving", flush=True)
"""
    )
    code, out, err, elapsed = finish(proc, 60.0)
    assert "leaving" in out, err[-3000:]
    assert code == 0, f"exit status {code}\n{err[-3000:]}"
    assert elapsed < PROMPT_S, f"exit took {elapsed:.1f}s"
    assert "Traceback" not in err, err[-3000:]


# -- killed workers ----------------------------------------------------------------------------


def test_process_worker_killed_mid_stream() -> None:
    needs_kind("process")
    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(200))
        .pipe(functools.partial(pid_after, 0.02), executor="process", concurrency=2, name="victim")
        .add_sink(buffer_size=2)
    )
    got: list[int] = []

    def body() -> None:
        with b.build() as pipeline:
            for pid in pipeline:
                if not got:
                    os.kill(pid, signal.SIGKILL)
                got.append(pid)

    with pytest.raises(BrokenExecutor) as info:
        bounded(body, 60.0)
    text = str(info.value) + " ".join(getattr(info.value, "__notes__", []))
    assert "victim" in text, text
    assert len(got) < 200


def test_run_in_subprocess_child_killed() -> None:
    run = run_in_subprocess()
    if run is None:
        pytest.skip("ftpipe.run_in_subprocess is not written yet")
    b = (
        ftpipe.PipelineBuilder()
        .add_source(Endless())
        .pipe(functools.partial(plain_stage, 1, 0, 0.0), concurrency=2)
    )

    def body() -> None:
        with run(b) as results:
            register_child(results.pid)
            for i, _ in enumerate(results):
                if i == 5:
                    os.kill(results.pid, signal.SIGKILL)

    with pytest.raises(BrokenExecutor) as info:
        bounded(body, 60.0)
    assert "SIGKILL" in str(info.value) or "-9" in str(info.value), str(info.value)


def test_run_in_subprocess_closed_early_reaps_child() -> None:
    run = run_in_subprocess()
    if run is None:
        pytest.skip("ftpipe.run_in_subprocess is not written yet")
    b = (
        ftpipe.PipelineBuilder()
        .add_source(Endless())
        .pipe(functools.partial(sleep_then, 0.05), concurrency=2)
    )

    def body() -> int:
        with run(b) as results:
            register_child(results.pid)
            for i, _ in enumerate(results):
                if i == 3:
                    return results.pid
        return -1

    pid = bounded(body, 60.0)
    # The leak fixture checks the child is gone; say so precisely here too.
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
