"""Stages on an executor: threads that submit chunks of inputs and wait for them.

::

    inbox.get(n) ──► executor.submit(call_chunk, fn, items) ──► wait(future | stop) ──► outbox.put
                     (one call, many inputs: a process or subinterpreter pays its
                      round trip per chunk, not per item)

A process, a subinterpreter or a Dask worker runs the chunk; ``_calls.call_chunk``
calls ``fn`` on each input there and reports one outcome per input, so a failure
still names its own input and the retry and error policies
(``_stage.RetryPolicy``) apply per input, exactly as on thread stages.  Chunks adapt like the thread workers'
batches: they grow while calls are short (measured where they ran) and stay at
one input when a call takes longer than ``_CHUNK_TARGET_S``, so slow calls keep
every worker busy.  Pools the pipeline creates get two submitting threads per
worker: the next chunk is queued while one runs, so a worker never idles
waiting for a round trip through the parent.

Waiting includes the pipeline's stop future, so closing never waits on a call
that will not come back soon; an executor that refuses work stops the
pipeline, whatever the error policy, with a note naming the stage.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Future, wait
from functools import partial
from itertools import chain
from time import perf_counter
from typing import Any

from ._calls import ChunkOutcome, call_chunk
from ._channel import EndOfStream, Stopped
from ._config import FnKind
from ._context import ChunkContext
from ._stage import SKIPPED, Outcome, RetryPolicy, StageFailed, StageRuntime, guarded, next_batch

__all__ = ["executor_worker"]

# A chunk's calls take about this long once its size has adapted: long enough that
# the parent's share of a round trip (pickling, a pipe, four thread wake-ups: about
# 0.3 ms of CPU on a GIL build) stays a few percent of it, short enough that a slow
# stage still hands work to every worker and the last chunks end close together.
_CHUNK_TARGET_S = 20e-3


def executor_worker(stage: StageRuntime) -> Callable[[], None]:
    """Return the body of one thread that feeds a stage's items to its executor."""
    cfg, inbox, outbox, control = stage.config, stage.inbox, stage.outbox, stage.control
    executor = stage.executor
    assert executor is not None
    retry = RetryPolicy(stage)
    counters = retry.counters
    fn = cfg.fn
    assert fn is not None
    kind = cfg.fn_kind.value
    flat = cfg.fn_kind in (FnKind.GENERATOR, FnKind.ASYNC_GENERATOR)
    workforce = stage.workforce
    most = max(1, inbox.capacity // workforce.size)
    generation = workforce.generation

    def submit(items: list[Any], seq0: int) -> ChunkOutcome:
        """Run one chunk; a failure of the whole call becomes a failure of its inputs."""
        try:
            # The size now: a resize shows in the next chunk's worker_info().
            ctx = ChunkContext(cfg.name, workforce.size, cfg.seed_key, seq0 + cfg.position_offset)
            future = executor.submit(call_chunk, fn, items, kind, ctx)
        except BrokenExecutor as broken:
            # A worker died before this chunk was taken: the stage fails at its
            # first input (an earlier input than a failure already recorded wins).
            retry.fail(broken, seq0, detail=_range(seq0, items, "never ran"))
            raise  # unreachable: a broken executor is never skipped
        except Exception as refusal:  # noqa: BLE001 - a refusing executor is fatal, whatever the policy
            control.fail(
                refusal, f"ftpipe: the executor of stage {cfg.name!r} refused input #{seq0}"
            )
            raise Stopped from None
        waits: tuple[Future[Any], ...] = (future, control.stop_future)
        done, _ = wait(waits, return_when=FIRST_COMPLETED)
        if future not in done:
            future.cancel()
            raise Stopped
        exc = future.exception()
        if exc is None:
            return future.result()  # type: ignore[no-any-return]
        if isinstance(exc, BrokenExecutor):
            # The chunk was lost with the worker, whether it was running or still queued
            # behind the call that broke it: fail at its first input.
            retry.fail(exc, seq0, detail=_range(seq0, items, "were lost with the worker"))
        if len(items) == 1:
            return [None], {0: exc}, 0.0
        # The chunk as a whole could not travel (an argument or a result that does
        # not pickle): run its inputs one by one so the failure names its own input.
        results: list[Any] = []
        failures: dict[int, BaseException] = {}
        seconds = 0.0
        for i, item in enumerate(items):
            one, failed, spent = submit([item], seq0 + i)
            results.append(one[0])
            if failed:
                failures[i] = failed[0]
            seconds += spent
        return results, failures, seconds

    def rerun(item: Any, seq: int) -> Outcome:
        """One more attempt at one input, on the executor; its seconds there are busy time."""
        (result,), failed, seconds = submit([item], seq)
        counters.busy += seconds
        return result, failed.get(0)

    def settle(items: list[Any], seq0: int, outcome: ChunkOutcome) -> list[Any]:
        """Apply the retry and error policies to a chunk's failures; return its outputs.

        Raises:
            StageFailed: An input failed for good under on_error="raise"; the
                outputs of the inputs before it were put already.
        """
        results, failures, seconds = outcome
        counters.busy += seconds
        if not failures:
            return list(chain.from_iterable(results)) if flat else results
        out: list[Any] = []
        try:
            for i, result in enumerate(results):
                exc = failures.get(i)
                if exc is not None:
                    seq = seq0 + i
                    result = retry.settle(partial(rerun, items[i], seq), exc, seq)
                    if result is SKIPPED:
                        continue
                if flat:
                    out.extend(result)
                else:
                    out.append(result)
        except StageFailed as failure:
            # Outputs of the inputs before the failure still go downstream.
            outbox.put(seq0, failure.seq, out)
            counters.items_out += len(out)
            raise
        return out

    def run() -> None:
        batch = 1  # grows while calls are short; a slow stage keeps one input per call
        while not workforce.retire(generation):
            t0 = perf_counter()
            try:
                seq0, items = inbox.get(batch)
            except EndOfStream:
                return
            t1 = perf_counter()
            counters.starved += t1 - t0
            counters.items_in += len(items)
            outcome = submit(items, seq0)
            out = settle(items, seq0, outcome)
            t2 = perf_counter()
            outbox.put(seq0, seq0 + len(items), out)
            counters.items_out += len(out)
            counters.blocked += perf_counter() - t2
            batch = next_batch(batch, outcome[2] / len(items), most, _CHUNK_TARGET_S)

    return guarded(stage, run)


def _range(seq0: int, items: list[Any], what: str) -> str:
    """A note's ending naming a chunk's inputs, or nothing for a single input."""
    return f" (inputs #{seq0} to #{seq0 + len(items) - 1} {what})" if len(items) > 1 else ""
