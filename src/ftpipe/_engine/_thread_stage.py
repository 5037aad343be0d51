"""Thread stages: N threads, each moving batches from the input channel to the output channel.

::

    inbox.get(batch) ──► one body per shape of function ──► outbox.put(range, outputs)
                         batched:   out.extend(map(fn, items))   (plain functions)
                         collected: out.extend(list(fn(x)))      (generators with retries)
                         streamed:  islice(fn(x), room) ──► partial puts while a
                                    generator yields more than the output holds
                                    (generators without retries, disaggregate)

    aggregate: one thread, items ──► lists of ``size`` ──► outbox

A worker takes a batch from its input channel, runs the stage function on each
item without holding any lock, and puts the batch's outputs with one call.
Batches adapt (``next_batch``): a worker whose calls are slow takes one item at
a time so the stage's other workers are not left idle; a worker whose calls take
microseconds takes up to half its share of the input buffer, so the hand-off cost
is paid per batch.  The shapes share that loop and differ only in how one batch
of inputs becomes outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from itertools import islice
from time import perf_counter, thread_time
from typing import Any

from ._calls import call_each, outputs
from ._channel import Channel, EndOfStream, Stopped
from ._context import positioned, worker_resized
from ._setup import start_worker
from ._stage import SKIPPED, RetryPolicy, StageFailed, StageRuntime, attempt, guarded, next_batch
from ._stats import WorkerCounters

__all__ = ["aggregate_worker", "batched_worker", "collected_worker", "streamed_worker"]


class _Out:
    """One batch's outputs on their way downstream; inputs before ``done`` were put already."""

    __slots__ = ("_counters", "_outbox", "blocked", "done", "values")

    def __init__(self, outbox: Channel, counters: WorkerCounters, seq0: int) -> None:
        self._outbox = outbox
        self._counters = counters
        self.values: list[Any] = []
        self.done = seq0
        self.blocked = 0.0  # seconds waiting in hand_over's puts, which are not busy time

    def put(self, end: int) -> None:
        """Put the outputs of inputs ``[done, end)``."""
        self._outbox.put(self.done, end, self.values)
        self._counters.items_out += len(self.values)

    def hand_over(self, seq: int, mark: int) -> None:
        """Put input ``seq``'s outputs so far (``values[mark:]``), ahead of the rest of them.

        For a generator yielding more than the output channel holds: memory stays
        bounded.  The outputs of the inputs before ``seq`` go first, whole.
        """
        t0 = perf_counter()
        if seq > self.done:
            self._outbox.put(self.done, seq, self.values[:mark])
        self._outbox.put(seq, seq, self.values[mark:], final=False)
        self._counters.items_out += len(self.values)
        self.values, self.done = [], seq
        self.blocked += perf_counter() - t0


# step(items, seq0, out): turn one batch of inputs into outputs in out.values.
_Step = Callable[[Sequence[Any], int, _Out], None]


def _worker(stage: StageRuntime, counters: WorkerCounters, step: _Step) -> Callable[[], None]:
    """The loop every thread-stage worker runs around its ``step``."""
    inbox, outbox, workforce = stage.inbox, stage.outbox, stage.workforce
    most = max(1, inbox.capacity // (2 * workforce.size))
    generation = workforce.generation
    index = next(i for i, c in enumerate(stage.counters) if c is counters)
    key, offset = stage.config.seed_key, stage.config.position_offset

    def run() -> None:
        start_worker(stage, index)  # worker_info(), item_seed(), the initializer
        batch = 1  # grows while calls are cheap; a slow stage keeps one item per hand-off
        while not workforce.retire(generation):
            t0 = perf_counter()
            try:
                seq0, items = inbox.get(batch)
            except EndOfStream:
                return
            worker_resized(workforce.size)  # an int compare unless the stage was resized
            t1 = perf_counter()
            counters.starved += t1 - t0
            counters.items_in += len(items)
            out = _Out(outbox, counters, seq0)
            c1 = thread_time()
            try:
                step(positioned(items, seq0 + offset, key), seq0, out)  # as is without a seed
            except StageFailed as failure:
                out.put(failure.seq)  # the outputs of the inputs before it still go downstream
                raise
            t2 = perf_counter()
            counters.cpu += thread_time() - c1
            busy = t2 - t1 - out.blocked
            counters.busy += busy
            out.put(seq0 + len(items))
            counters.blocked += perf_counter() - t2 + out.blocked
            batch = next_batch(batch, busy / len(items), most)

    return guarded(stage, run)


def _fn(stage: StageRuntime) -> Callable[[Any], Any]:
    fn = stage.config.fn
    assert fn is not None, "a thread stage always has a function (disaggregate: flatten)"
    return fn


def batched_worker(stage: StageRuntime) -> Callable[[], None]:
    """A worker for a plain function: ``map`` over the batch, a retry only where a call failed."""
    retry = RetryPolicy(stage)
    fn = _fn(stage)

    def step(items: Sequence[Any], seq0: int, out: _Out) -> None:
        values = out.values

        def failed(i: int, exc: BaseException) -> None:
            result = retry.settle(partial(attempt, fn, items[i]), exc, seq0 + i)
            if result is not SKIPPED:
                values.append(result)

        call_each(fn, items, values, failed)

    return _worker(stage, retry.counters, step)


def collected_worker(stage: StageRuntime) -> Callable[[], None]:
    """A worker for a generator with retries: each input's outputs are collected, then kept.

    A retried input must not leave the outputs of a failed attempt behind, so
    nothing of an input goes out before its generator ran to the end.
    """
    retry = RetryPolicy(stage)
    collect = partial(outputs, _fn(stage), "generator")

    def step(items: Sequence[Any], seq0: int, out: _Out) -> None:
        values = out.values
        for i, item in enumerate(items):
            try:
                values.extend(collect(item))
            except BaseException as exc:  # noqa: BLE001 - the policies decide
                result = retry.settle(partial(attempt, collect, item), exc, seq0 + i)
                if result is not SKIPPED:
                    values.extend(result)

    return _worker(stage, retry.counters, step)


def streamed_worker(stage: StageRuntime) -> Callable[[], None]:
    """A worker for a generator without retries: outputs go out while it still yields.

    A generator may yield more than the output channel holds (a file's lines, a
    video's frames); then what is ready is handed over so memory stays bounded.
    """
    retry = RetryPolicy(stage)
    fn = _fn(stage)
    capacity = stage.outbox.capacity

    def step(items: Sequence[Any], seq0: int, out: _Out) -> None:
        for i, item in enumerate(items):
            seq = seq0 + i
            mark = len(out.values)
            try:
                produced = iter(fn(item))
                while True:
                    room = capacity - len(out.values)
                    if room <= 0:
                        out.hand_over(seq, mark)
                        mark = 0
                        continue
                    before = len(out.values)
                    out.values.extend(islice(produced, room))
                    if len(out.values) - before < room:
                        break
            except Stopped:
                raise  # the pipeline is stopping: not a failure of this input
            except BaseException as exc:  # noqa: BLE001 - the error policy decides
                # A skipped input contributes nothing, except what was already
                # handed downstream because it did not fit.  No retries here (a
                # retried generator is collected), so the error policy applies at once.
                del out.values[mark:]
                retry.fail(exc, seq)

    return _worker(stage, retry.counters, step)


def aggregate_worker(stage: StageRuntime) -> Callable[[], None]:
    """The one thread of an aggregate stage: items in, lists of ``size`` out."""
    cfg, inbox, outbox = stage.config, stage.inbox, stage.outbox
    counters = stage.new_counters()
    size = cfg.size

    def run() -> None:
        group: list[Any] = []
        done = seq_end = cut = 0  # inputs before ``done`` are in lists put already
        while True:
            t0 = perf_counter()
            try:
                seq0, items = inbox.get(max(1, inbox.capacity // 2))
            except EndOfStream:
                break
            counters.starved += perf_counter() - t0
            counters.items_in += len(items)
            out = []
            for seq_end, item in enumerate(items, seq0 + 1):
                group.append(item)
                if len(group) == size:
                    out.append(group)
                    group = []
                    cut = seq_end
            if not out:
                continue
            t1 = perf_counter()
            # The range ends after the last full list: a checkpoint's ledger then
            # counts the inputs of the list still filling as not done.
            outbox.put(done, cut, out)
            done = cut
            counters.items_out += len(out)
            counters.blocked += perf_counter() - t1
        if group and not cfg.drop_last:
            outbox.put(done, seq_end, [group])
            counters.items_out += 1

    return guarded(stage, run)
