"""Stages on an executor: threads that submit one call each and wait for it.

::

    inbox.get(1) ──► executor.submit(fn, item) ──► wait(future | stop) ──► outbox.put

A process, a subinterpreter or a Dask worker runs the call; generator and async
functions go through ``_calls`` so the executor returns a plain value.  Waiting
includes the pipeline's stop future, so closing never waits on a call that
will not come back soon; an executor that refuses work stops the pipeline,
whatever the error policy, with a note naming the stage.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, wait
from time import perf_counter
from typing import Any

from . import _calls
from ._channel import EndOfStream, Stopped
from ._config import FnKind
from ._workers import StageRuntime, guarded, stage_fn

__all__ = ["executor_worker"]


def executor_worker(stage: StageRuntime) -> Callable[[], None]:
    """Return the body of one thread that feeds a stage's items to its executor."""
    cfg, inbox, outbox, control = stage.config, stage.inbox, stage.outbox, stage.control
    executor = stage.executor
    assert executor is not None
    counters = stage.new_counters()
    fn = stage_fn(cfg)
    wrapper: Callable[..., Any] | None = {
        FnKind.GENERATOR: _calls.collect_generator,
        FnKind.ASYNC: _calls.run_coroutine,
        FnKind.ASYNC_GENERATOR: _calls.collect_async_generator,
    }.get(cfg.fn_kind)

    def call(item: Any, seq: int) -> list[Any] | None:
        for attempt in range(cfg.retries + 1):
            try:
                future = (
                    executor.submit(wrapper, fn, item) if wrapper else executor.submit(fn, item)
                )
            except Exception as refusal:  # noqa: BLE001 - a refusing executor is fatal, whatever the policy
                control.fail(
                    refusal, f"ftpipe: the executor of stage {cfg.name!r} refused input #{seq}"
                )
                raise Stopped from None
            done, _ = wait([future, control.stop_future], return_when=FIRST_COMPLETED)
            if future not in done:
                future.cancel()
                raise Stopped
            exc = future.exception()
            if exc is None:
                result = future.result()
                return (
                    list(result)
                    if wrapper is not None and cfg.fn_kind is not FnKind.ASYNC
                    else [result]
                )
            if attempt == cfg.retries or not isinstance(exc, Exception):
                stage.failed(exc, seq, counters)
                return None
            counters.retries += 1
        return None

    def run() -> None:
        while True:
            t0 = perf_counter()
            try:
                seq, items = inbox.get(1)
            except EndOfStream:
                return
            t1 = perf_counter()
            counters.starved += t1 - t0
            counters.items_in += 1
            result = call(items[0], seq)
            out = result if result is not None else []
            t2 = perf_counter()
            counters.busy += t2 - t1
            outbox.put(seq, seq + 1, out)
            counters.items_out += len(out)
            counters.blocked += perf_counter() - t2

    return guarded(stage, run)
