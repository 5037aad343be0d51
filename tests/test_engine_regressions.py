"""Regression tests for engine bugs found by the stress suite (stress/).

Each test is the smallest reproducer of one bug, named after the behaviour it
pins down; the docstring says what went wrong and where.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import ftpipe


def _ftpipe_notes(exc: BaseException) -> list[str]:
    return [n for n in getattr(exc, "__notes__", []) if n.startswith("ftpipe:")]


def _raise_stop_iteration_on_3(x: int) -> int:
    if x == 3:
        raise StopIteration("a user bug: next() on an exhausted iterator")
    return x


@pytest.mark.parametrize("executor", ["thread", "user-executor"])
def test_stop_iteration_from_a_stage_is_an_error_not_a_silent_end(executor):
    """A stage function raising StopIteration silently truncated the output.

    Thread workers call ``out.extend(map(fn, items))`` (_workers.py, ``_call_all``):
    a StopIteration escaping ``fn`` ends the ``map`` early, so the rest of the batch is
    dropped without a failure.  On the executor path the StopIteration is the stage
    error and ``Pipeline.__next__`` re-raises it, which ends the consumer's ``for``
    loop as if the pipeline were done.  Either way items vanish silently (PEP 479
    turns the same mistake in a generator into a RuntimeError for this reason).
    """
    with ThreadPoolExecutor(2) as pool:
        b = (
            ftpipe.PipelineBuilder()
            .add_source(range(10))
            .pipe(
                _raise_stop_iteration_on_3,
                executor=None if executor == "thread" else pool,
                name="stage-x",
            )
        )
        got = []
        with pytest.raises(Exception) as info, b.build() as pipeline:  # noqa: PT011
            for x in pipeline:
                got.append(x)
        assert not isinstance(info.value, StopIteration)
        assert any("stage-x" in n for n in _ftpipe_notes(info.value)), info.value
        assert got == [0, 1, 2]


def _yield_two_then_fail(x: int):
    yield x
    yield x + 100
    if x == 1:
        raise ValueError("fails after yielding")


@pytest.mark.parametrize("retries", [0, 1])
@pytest.mark.parametrize("executor", ["thread", "user-executor"])
def test_skip_drops_all_output_of_a_generator_that_fails_midway(retries, executor):
    """``on_error="skip"`` kept a failing generator's partial output, on one path only.

    The streaming path of thread workers (``retries == 0``, _workers.py ``run``:
    ``out.extend(islice(produced, room))`` then ``stage.failed``) leaves the values
    the generator yielded before raising in ``out``; the ``retries > 0`` path
    (``list(fn(item))``) and the executor path (``_calls.collect_generator``) drop
    them.  The same pipeline thus gives different outputs depending on ``retries``
    and the executor.  Expected here: a skipped input contributes nothing (when its
    output fitted in the buffer, which it does here).
    """
    with ThreadPoolExecutor(2) as pool:
        b = (
            ftpipe.PipelineBuilder()
            .add_source(range(3))
            .pipe(
                _yield_two_then_fail,
                on_error="skip",
                retries=retries,
                executor=None if executor == "thread" else pool,
            )
        )
        with b.build() as pipeline:
            assert list(pipeline) == [0, 100, 2, 102]


_ASYNC_FAILURES = """
import asyncio, gc, ftpipe

async def fail(x):
    await asyncio.sleep(0.01)
    raise ValueError(f"async failure {x}")

pipeline = ftpipe.PipelineBuilder().add_source(range(16)).pipe(fail, concurrency=8).build()
try:
    with pipeline:
        list(pipeline)
except ValueError:
    print("stage error surfaced")
del pipeline
gc.collect()  # the free-threaded build does not collect these cycles at exit by itself
"""


def test_failing_async_stage_leaves_no_unretrieved_task_exceptions():
    """Several coroutines failing at once logged "Task exception was never retrieved".

    _async_stage.py ``_serve``: the loop over ``done`` calls ``stage.failed`` for the
    first failed task, which raises ``Stopped`` out of ``asyncio.run``; the other
    finished tasks in ``done`` (and in ``running``) never have ``exception()`` read,
    so asyncio logs each one when it is collected (in a child here, so the log lands
    on its stderr) — noise for an error that was already reported.
    """
    result = subprocess.run(
        [sys.executable, "-c", _ASYNC_FAILURES],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and "stage error surfaced" in result.stdout, result.stderr
    assert "never retrieved" not in result.stderr, result.stderr[:2000]


def test_one_exception_object_gets_one_stage_note():
    """An exception object that several calls raise got one ftpipe note per call.

    ``StageRuntime.failed`` (_workers.py) calls ``exc.add_note`` before
    ``control.fail``, and ``fail`` keeps only the first error; every worker that
    fails concurrently with the same object still annotates it.  That happens for
    real when an executor fails all queued calls with one ``BrokenExecutor``
    instance (seen with executor="process" when workers cannot start: the consumer
    got "raised in stage ... on input #1" and "... on input #0" on one exception).
    """
    shared = ValueError("one object, raised by every call")
    barrier = threading.Barrier(2, timeout=5)

    def fail(x: int) -> int:
        barrier.wait()  # both workers are inside a call before either fails
        raise shared

    b = ftpipe.PipelineBuilder().add_source(range(2)).pipe(fail, concurrency=2, name="shared")
    with pytest.raises(ValueError) as info, b.build() as pipeline:
        list(pipeline)
    assert info.value is shared
    assert len(_ftpipe_notes(info.value)) == 1, info.value.__notes__


def test_executor_that_refuses_work_reports_the_stage():
    """An error from ``executor.submit`` itself reached the consumer without a stage note.

    _workers.py ``_executor_worker``: ``executor.submit`` is outside any ``try`` that
    applies the error policy, so its exception goes to the catch-all
    ``control.fail(exc)`` with no note: the user sees "cannot schedule new futures
    after shutdown" and cannot tell which stage's executor it was.
    """
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    b = ftpipe.PipelineBuilder().add_source(range(3)).pipe(str, executor=pool, name="closed-pool")
    with pytest.raises(RuntimeError) as info, b.build() as pipeline:
        list(pipeline)
    assert any("closed-pool" in n for n in _ftpipe_notes(info.value)), getattr(
        info.value, "__notes__", None
    )


def test_close_is_prompt_with_a_slow_stage_at_concurrency_1():
    """Stopping waited for a slow stage to finish a whole batch of up to 32 items.

    _workers.py ``_thread_worker.run``: at ``concurrency == 1`` the batch is
    ``max_batch`` (half the input buffer) from the first call and never adapts (the
    adaptation runs only ``if cfg.concurrency > 1``), and ``_call_all`` maps ``fn``
    over the whole batch without looking at ``control.stopping``.  With 0.2 s calls,
    ``close()`` (or Ctrl-C, or an exception in the consumer) took ~6 s instead of
    one call's time.  Found by stress/test_faults.py (SIGINT to a child took 16 s).
    """
    import time

    def slow(x: int) -> int:
        time.sleep(0.2)
        return x

    pipeline = ftpipe.PipelineBuilder().add_source(range(100)).pipe(slow).build()
    with pipeline:
        next(iter(pipeline))
        start = time.monotonic()
    assert time.monotonic() - start < 1.5, f"close() took {time.monotonic() - start:.1f}s"


def _double(x: int) -> int:
    return 2 * x


def test_several_consumers_of_a_small_sink_never_hang():
    """Consumers in several threads hung with the sink full (lost wake-up).

    Found by stress/test_lifecycle_stateful.py against the channel of 14:00 (one
    counting eventfd per channel side shared by every waiter): a waiter that
    registered, then lost the race to ``wait()`` to a later waiter, slept with its
    registration already consumed, so no put ever woke it; the consumer slept in
    ``Channel.get`` while four workers slept in ``Channel.put`` on a full sink.
    Reproduced within ~10 trials of this loop on 3.13t; the per-waiter wakers of
    14:08 fix it.  Kept so it stays fixed.
    """
    for _ in range(200):
        pipeline = (
            ftpipe.PipelineBuilder()
            .add_source(range(40))
            .pipe(_double, concurrency=4)
            .add_sink(buffer_size=2)
            .build()
        )
        pipeline.start()
        got: list[int] = []

        def consume(pipeline: ftpipe.Pipeline = pipeline, got: list[int] = got) -> None:
            for _ in range(5):
                try:
                    got.append(next(pipeline))
                except StopIteration:
                    return

        threads = [threading.Thread(target=consume) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        hung = any(t.is_alive() for t in threads)
        pipeline.close()
        assert not hung, f"a consumer hung after {len(got)} items"
        assert sorted(got) == [2 * i for i in range(15)]


_EXIT_WITH_ASYNC_STAGE = """
import asyncio, ftpipe

async def echo(x):
    await asyncio.sleep(0)
    return x

pipeline = ftpipe.PipelineBuilder().add_source(range(10**6)).pipe(echo, concurrency=4).add_sink(buffer_size=2).build()
it = iter(pipeline)
print(next(it), next(it), flush=True)
# falls off the end with the pipeline running
"""


def test_interpreter_exit_with_an_async_stage_running_does_not_hang():
    """Interpreter exit hung forever with an async stage running (14:08 engine).

    The async stage does its channel operations through ``asyncio.to_thread``,
    i.e. on the event loop's default ``ThreadPoolExecutor``.  At exit,
    ``threading._shutdown`` runs ``concurrent.futures.thread._python_exit`` (it is
    registered with ``threading._register_atexit``) *before* ordinary ``atexit``
    handlers: it joins that executor's worker, which sleeps in ``Channel.put`` on
    a full sink; ftpipe's own ``atexit`` hook (``_stop_all_at_exit``, which would
    stop the channels) never gets to run.  Found by stress/test_faults.py
    (``test_interpreter_exit_with_a_pipeline_running[async-*]``).
    """
    for _ in range(5):  # the stray log below shows in about 2 runs of 5
        proc = subprocess.Popen(
            [sys.executable, "-c", _EXIT_WITH_ASYNC_STAGE],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("the child hung at interpreter exit (killed after 15 s)")
        assert proc.returncode == 0 and out.startswith("0 1"), err[-2000:]
        # 8d4cc56 exits, but its helper tasks may log "Task exception was never
        # retrieved ... _Offload.call() ... Stopped" on the way out (stress/test_faults.py
        # interpreter-exit tests, async-*): _async_stage.py leaves offload tasks that
        # failed with Stopped unawaited when the loop ends.
        assert "Traceback" not in err, err[-3000:]


def _fail_on_5(x: int) -> int:
    if x == 5:
        raise ValueError("five")
    return x


@pytest.mark.parametrize("ordered", [True, False])
def test_outputs_of_inputs_before_a_failure_reach_the_consumer_ordered_or_not(ordered):
    """With ``ordered=False`` a failing stage dropped outputs of inputs *before* the failure.

    The engine of d371c95 delivers everything produced before a failure, then raises
    (``_Run.fail`` cuts the failing stage's output channel at the failing input).
    For an ordered channel ``Channel.put`` drops only ranges with ``start >= cutoff``;
    for an unordered one it drops every put after the cut (``not self.ordered or
    start >= self._cutoff`` in _channel.py ``put``), including the failing worker's
    own batch prefix, which it puts right after recording the failure.  One worker,
    inputs 0..9, failure on 5: ordered delivers [0..4], unordered only [0, 1, 2].
    """
    b = ftpipe.PipelineBuilder().add_source(range(10)).pipe(_fail_on_5, ordered=ordered)
    got = []
    with pytest.raises(ValueError, match="five"), b.build() as pipeline:
        for x in pipeline:
            got.append(x)
    assert sorted(got) == [0, 1, 2, 3, 4]


def _identity(x: int) -> int:
    return x


@pytest.mark.thread_unsafe(reason="patches ftpipe._engine._channel.wake_all for the whole process")
def test_ctrl_c_inside_the_consumers_get_does_not_strand_sleeping_workers(monkeypatch):
    """Ctrl-C landing inside ``Channel.get`` left workers asleep forever; close() hung.

    _channel.py ``get``: under the lock it takes the whole ``_putters`` list
    (``wake, self._putters = self._putters, []``), releases the lock, then calls
    ``wake_all(wake)``.  A KeyboardInterrupt delivered between the two (signal
    handlers run between bytecodes of the main thread) drops that list: those
    producers sleep with no registration, ``stop()`` only wakes registered waiters,
    and ``close()`` (run by ``with`` on the way out) joins them forever.  Seen as a
    30 s hang in about 1 run of 12 of stress/test_faults.py
    ``test_sigint_stops_a_child_running_a_pipeline[thread-busy]``, the child stuck in
    ``_Run.join`` with three workers in ``Channel.put``.  Here the interrupt is
    injected at that exact point by making the consumer's first wake-up raise.
    """
    from ftpipe._engine import _channel

    real = _channel.wake_all
    main = threading.main_thread()
    fired = threading.Event()
    dropped = []

    def interrupted(wakers):
        if wakers and threading.current_thread() is main and not fired.is_set():
            fired.set()
            dropped.extend(wakers)
            raise KeyboardInterrupt  # what a SIGINT at this point does
        real(wakers)

    # Three workers, a one-item sink: producers are asleep in put() at every get().
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(10**6))
        .pipe(_identity, concurrency=3)
        .add_sink(buffer_size=1)
        .build()
    )
    pipeline.start()
    next(pipeline)
    monkeypatch.setattr(_channel, "wake_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        for _ in range(10**6):
            next(pipeline)
    monkeypatch.setattr(_channel, "wake_all", real)
    assert fired.is_set()
    closer = threading.Thread(target=pipeline.close, daemon=True)
    closer.start()
    closer.join(10)
    hung = closer.is_alive()
    if hung:  # free the stranded workers so the rest of the session is not stuck
        real(dropped)
        closer.join(10)
    assert not hung, "close() hung: producers asleep in Channel.put were never woken"


def _ten_each(x: int):
    yield from range(10 * x, 10 * x + 10)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_closing_while_a_generator_streams_is_not_a_stage_failure(on_error):
    """``close()`` during a generator's partial hand-off was recorded as a stage failure.

    _workers.py ``_thread_worker.run`` (2f31788): when a generator yields more than
    the output buffer holds, the worker calls ``outbox.put(..., final=False)``
    *inside* the ``try`` around the generator; once the pipeline stops, that put
    raises the engine's internal ``Stopped``, which the ``except BaseException``
    hands to ``stage.failed``: the stage counts a failure, and with no other error
    ``Stopped`` (with the note "raised in stage ...") becomes the pipeline's error,
    raised by ``next()`` in a consumer thread that was waiting (found by the soak of
    stress/test_lifecycle_stateful.py, close while another thread iterates).  With
    ``on_error="skip"`` it is silently counted as a skipped input instead.
    """
    import time

    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(1000))
        .pipe(_ten_each, on_error=on_error, name="gen")
        .add_sink(buffer_size=2)
        .build()
    )
    pipeline.start()
    assert next(pipeline) == 0
    time.sleep(0.3)  # the worker refills the 2-item sink and blocks in a partial put
    pipeline.close()
    assert pipeline.stats()["gen"].failures == 0, str(pipeline.stats())
    assert pipeline._run.error is None, repr(pipeline._run.error)  # noqa: SLF001


def _noop(x: int) -> int:
    return x


def test_close_racing_start_never_joins_an_unstarted_thread():
    """``close()`` racing ``start()`` raised "cannot join thread before it is started".

    _pipeline.py ``_Run.thread``: the new thread is appended to ``_threads`` under
    the lock but started after releasing it; a ``close()`` in another thread copies
    ``_threads`` in ``join()`` and calls ``Thread.join`` on one not started yet.
    Found by the soak of stress/test_lifecycle_stateful.py (``close_racing_start``).
    """
    errors: list[BaseException] = []
    for _ in range(300):
        pipeline = (
            ftpipe.PipelineBuilder().add_source(range(100)).pipe(_noop, concurrency=8).build()
        )
        barrier = threading.Barrier(2)

        def start(
            pipeline: ftpipe.Pipeline = pipeline, barrier: threading.Barrier = barrier
        ) -> None:
            barrier.wait()
            try:
                pipeline.start()
            except RuntimeError as exc:
                if "already ran" not in str(exc):
                    errors.append(exc)

        starter = threading.Thread(target=start)
        starter.start()
        barrier.wait()
        try:
            pipeline.close()
        except RuntimeError as exc:
            errors.append(exc)
        starter.join()
        pipeline.close()
        if errors:
            break
    assert not errors, errors[0]


def test_ordered_async_stage_delivers_nothing_after_the_failing_input():
    """An ordered async stage delivered the output of a later input, then the error.

    _async_stage.py ``_loop``: outputs are emitted as the contiguous run of finished
    inputs from the oldest missing one, and a failed input counts as finished (with no
    output).  Input 0 slow, input 2 done, input 1 failed: once input 0 finished, the
    run 0..2 went out as one put spanning ``[0, 3)``, which the channel's cut at 1
    accepts (it drops only ranges *starting* at or after the cut); the consumer got
    f(0), f(2), then the error.  Every other stage kind stops at the failure.
    """
    import asyncio

    events: dict[str, asyncio.Event] = {}

    def event(name: str) -> asyncio.Event:
        # Created inside the stage's own event loop (one thread runs all the calls).
        return events.setdefault(name, asyncio.Event())

    async def f(x: int) -> int:
        if x == 0:
            await event("1 failed").wait()  # finishes last
        elif x == 1:
            await event("2 done").wait()
            event("1 failed").set()
            raise ValueError("one fails")
        elif x == 2:
            event("2 done").set()
        return 10 * x

    b = ftpipe.PipelineBuilder().add_source(range(3)).pipe(f, concurrency=3, name="async-f")
    got = []
    with pytest.raises(ValueError, match="one fails") as info, b.build() as pipeline:
        for x in pipeline:
            got.append(x)
    assert got == [0], got
    assert any("async-f" in n and "#1" in n for n in _ftpipe_notes(info.value))


def test_busy_time_means_worker_seconds_on_every_stage_kind() -> None:
    # Each stage waits 20 ms per item at concurrency 4: 20 items are 0.4 worker-seconds
    # in the function whatever the stage kind (the async stage used to report a quarter,
    # and executor stages twice that: their submitting threads counted as workers).
    import asyncio
    import time

    def wait(x: int) -> int:
        time.sleep(0.02)
        return x

    async def wait_async(x: int) -> int:
        await asyncio.sleep(0.02)
        return x

    for fn in (wait, wait_async):
        pipeline = ftpipe.PipelineBuilder().add_source(range(20)).pipe(fn, concurrency=4, name="w")
        built = pipeline.add_sink().build()
        with built:
            assert list(built) == list(range(20))
        (stage,) = [s for s in built.stats().stages if s.name == "w"]
        assert 0.4 <= stage.busy_s < 0.4 * 1.5 + 0.1, (fn.__name__, stage.busy_s)
