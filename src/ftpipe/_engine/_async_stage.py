"""Async stages: one thread per stage runs an event loop with ``concurrency`` calls in flight.

::

    inbox.get ──► queue ──► up to N tasks: call(item, seq) ──► results ──► reorder ──► outbox.put
    (helper thread)           │ outputs_async(fn, kind, item),                        (helper thread)
                              │ retried as RetryPolicy says
                              └─ failed for good: StageFailed ──► cutoff: earlier inputs finish,
                                                                  later calls are cancelled

Channel operations block, so they run on two helper threads of the stage (one
takes input, one puts output) while the loop keeps the stage's coroutines going.
Not ``asyncio.to_thread``: the default executor's threads are joined at
interpreter exit *before* atexit hooks run, so one asleep in a channel would
keep the process from exiting.  Results are put in input order by the
loop itself (only contiguous ranges), so an ordered output channel never waits
on a range the loop has not finished.

A call returns its failure instead of raising it: a KeyboardInterrupt or
SystemExit escaping a task would leave ``asyncio.run`` and skip the policies that
every other stage kind applies (retry only ``Exception``s, name the stage).
"""

from __future__ import annotations

import asyncio
import queue
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Any

from ._calls import outputs_async
from ._channel import Channel, EndOfStream, Stopped
from ._context import POSITION, worker_resized
from ._setup import start_worker
from ._stage import Outcome, RetryPolicy, StageFailed, StageRuntime, guarded
from ._stats import WorkerCounters

__all__ = ["async_worker"]


def async_worker(stage: StageRuntime) -> Callable[[], None]:
    """Return the body of the thread that runs an async stage."""
    retry = RetryPolicy(stage)

    def run() -> None:
        start_worker(stage, 0)  # one worker: its calls share the loop thread's worker_info()
        asyncio.run(_serve(stage, retry))

    return guarded(stage, run)


class _Offload:
    """Runs blocking calls, one at a time, on a daemon thread owned by the pipeline."""

    def __init__(self, stage: StageRuntime, role: str) -> None:
        # SimpleQueue: one producer (the loop) and one consumer (the helper thread).
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        stage.control.thread(self._serve, f"ftpipe-{stage.config.name}-{role}")

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, fn, args = job
            try:
                outcome = (True, fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                outcome = (False, exc)
            try:
                loop.call_soon_threadsafe(_settle, future, outcome)
            except RuntimeError:
                pass  # the loop is closed: nobody awaits this any more

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return await future

    def close(self) -> None:
        self._jobs.put(None)


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.cancelled():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _cancelled_by_the_stage() -> bool:
    """Whether the running task was cancelled (by the stage), not the call raising it itself."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _serve(stage: StageRuntime, retry: RetryPolicy) -> None:
    cfg = stage.config
    fn = cfg.fn
    assert fn is not None
    kind = cfg.fn_kind.value
    counters = retry.counters
    seeded, offset = cfg.seed_key is not None, cfg.position_offset

    async def once(item: Any) -> Outcome:
        start = perf_counter()
        try:
            return await outputs_async(fn, kind, item), None
        except BaseException as exc:  # noqa: BLE001 - the policies decide, as on every stage kind
            if isinstance(exc, asyncio.CancelledError) and _cancelled_by_the_stage():
                raise
            # Returned, not raised: a KeyboardInterrupt or SystemExit escaping a task
            # would leave asyncio.run, and skip the error policy that names the stage.
            return None, exc
        finally:
            # Worker-seconds in the function, as on every stage kind: the calls in
            # flight overlap, and stats() divides by the concurrency.
            counters.busy += perf_counter() - start

    async def call(item: Any, seq: int) -> list[Any]:
        """Input ``seq``'s outputs; [] once skipped.  Raises StageFailed (see RetryPolicy)."""
        if seeded:
            POSITION.set(seq + offset)  # this task's own context: item_seed() of this input
        result, exc = await once(item)
        tries = 1
        while exc is not None and retry.again(exc, tries):
            tries += 1
            result, exc = await once(item)
        if exc is None:
            return result  # type: ignore[no-any-return]
        retry.fail(exc, seq)
        return []

    running: dict[asyncio.Task[list[Any]], int] = {}
    fetches: set[asyncio.Task[Any]] = set()
    fetcher = _Offload(stage, "get")
    try:
        putter = _Offload(stage, "put")
    except Stopped:  # closed while starting
        fetcher.close()
        raise
    try:
        await _loop(stage, counters, call, running, fetches, fetcher, putter)
    finally:
        fetcher.close()
        putter.close()
        # Leave no task behind with an exception nobody read (asyncio would log
        # it): the calls still running and a fetch still waiting for input.
        others = [*running, *fetches]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


async def _loop(
    stage: StageRuntime,
    counters: WorkerCounters,
    call: Callable[[Any, int], Any],
    running: dict[asyncio.Task[list[Any]], int],
    fetches: set[asyncio.Task[Any]],
    fetcher: _Offload,
    putter: _Offload,
) -> None:
    inbox, outbox, workforce = stage.inbox, stage.outbox, stage.workforce
    queue: deque[tuple[int, Any]] = deque()
    results: dict[int, list[Any]] = {}
    next_emit = 0
    fetch: asyncio.Task[tuple[int, list[Any]]] | None = None
    ended = False
    cutoff: int | None = None  # set once an input failed for good
    while True:
        # The calls in flight: workforce.size, which a resize changes (an int
        # attribute read, atomic; the next round sees a new value).
        worker_resized(workforce.size)  # the calls' worker_info() (they share this thread's)
        while queue and len(running) < workforce.size:
            seq, item = queue.popleft()
            running[asyncio.create_task(call(item, seq))] = seq
        if not queue and fetch is None and not ended:
            fetch = asyncio.create_task(fetcher.call(inbox.get, workforce.size))
            fetches.add(fetch)
        waiting: set[asyncio.Task[Any]] = set(running)
        if fetch is not None:
            waiting.add(fetch)
        if not waiting:
            return
        t0 = perf_counter()
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not running:
            counters.starved += perf_counter() - t0
        # Calls first: one that failed for good stopped the input channel, and the
        # fetch that then ends with Stopped (maybe in this same round) must see cutoff set.
        for task in done:
            if task is fetch:
                continue
            seq = running.pop(task)
            if task.cancelled():  # a later input, dropped after a failure
                results[seq] = []
                continue
            exc = task.exception()
            if exc is None:
                results[seq] = task.result()
                continue
            if not isinstance(exc, StageFailed):
                raise exc  # an engine bug: calls return their failures (see once)
            # Input seq failed for good: finish the calls for earlier inputs (their
            # outputs are still delivered), drop the later ones, take no more input.
            cutoff = seq if cutoff is None else min(cutoff, seq)
            ended = True
            queue.clear()
            for other, other_seq in running.items():
                if other_seq > cutoff:
                    other.cancel()
            results[seq] = []
        if fetch is not None and fetch in done:
            fetches.discard(fetch)
            got, fetch = fetch, None
            try:
                seq0, items = got.result()
            except EndOfStream:
                ended = True
            except Stopped:
                if cutoff is None:
                    raise
                # our own failure stopped the input: finish the earlier inputs
            else:
                if cutoff is None:
                    queue.extend(enumerate(items, seq0))
                    counters.items_in += len(items)
        if not results:
            continue
        if outbox.ordered:
            # Contiguous results from the oldest missing input, never reaching the
            # failed one: later inputs that finished first are not delivered (the
            # channel's cut only drops ranges that *start* at or after it).
            start, out = next_emit, []
            while next_emit in results and (cutoff is None or next_emit < cutoff):
                out.extend(results.pop(next_emit))
                next_emit += 1
            if next_emit == start:
                continue
            puts = [(start, next_emit, out)]
        else:
            # Unordered: emit whatever finished (but nothing from inputs at or after
            # a failure); the channel ignores the spans' order, except to keep each
            # input's number with its output for checkpoints (Channel.done).
            finished = [(seq, r) for seq, r in results.items() if cutoff is None or seq < cutoff]
            results.clear()
            if outbox.keeps_lineage:
                puts = [(seq, seq + 1, r) for seq, r in finished]
            else:
                puts = [(0, 0, [v for _, r in finished for v in r])]
        t1 = perf_counter()
        await putter.call(_put_each, outbox, puts)  # one hop to the helper thread
        counters.items_out += sum(len(out) for _, _, out in puts)
        counters.blocked += perf_counter() - t1


def _put_each(outbox: Channel, puts: list[tuple[int, int, list[Any]]]) -> None:
    for start, end, values in puts:
        outbox.put(start, end, values)
