"""The source: one thread that feeds the first channel from the user's iterable.

::

    Source(config, tracked) ── owns ch0 (sized for the first stage's workers) and the source's stats

    iterable ──next() x take──► chunk ──put──► ch0        (take grows while next() is cheap)

    async iterable ──pump task──► ready deque ──every item ready now──► chunk ──put──► ch0
                     (on the source thread's own event loop)

A plain iterable is read in chunks whose size adapts like a stage's batches: one
item at a time while ``next()`` is slow, up to half the channel while it takes
microseconds.  An async iterable is pumped by a task into a small buffer; the
feeder takes whatever is ready the moment the source has to wait, so an item
never sits in a chunk while the source waits for the next one.

A source error reaches the consumer after every item taken before it: those go
into the channel first, then the failure cuts the channel after them.

A source that saves its position (``state_dict()`` / ``load_state_dict()``) in a
pipeline that can be checkpointed: the thread first loads the checkpoint's state
and skips the items after it, then takes a snapshot before each chunk
(``_state.Snapshots``), so a checkpoint can restore the source at any item the
consumer has not yet had the outputs of.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterator
from itertools import islice
from time import perf_counter
from typing import Any

from ._channel import Channel, Stopped
from ._config import DEFAULT_BUFFER_SIZE, PipelineConfig
from ._resumable import is_stateful_source
from ._stage import SOURCE_NOTE, Control, as_stage_error, next_batch
from ._state import Snapshots
from ._stats import StageStats, WorkerCounters, merge

__all__ = ["Source"]


class Source:
    """The pipeline's source: the thread reading the user's iterable, and the channel it feeds."""

    def __init__(self, config: PipelineConfig, *, tracked: bool) -> None:
        """``tracked``: the run can be checkpointed (a stateful source keeps snapshots)."""
        self._source = config.source
        stages = config.stages
        # The first stage's input holds a batch for each of its workers; with no
        # stage at all this channel is the sink, sized as the user asked.
        capacity = (
            max(DEFAULT_BUFFER_SIZE, 2 * stages[0].concurrency)
            if stages
            else config.sink_buffer_size
        )
        self.channel = Channel(capacity, ordered=False)
        # Set once the thread started (or by the pipeline's calls in the consumer's thread).
        self.counters: WorkerCounters | None = None
        self.snapshots: Snapshots | None = None
        self._restore = config.source_state
        if tracked and is_stateful_source(self._source):
            # The first snapshot: what the run restores, or the source before its
            # first item (taken here, before the source thread starts iterating).
            offset = config.source_offset
            if self._restore is not None:
                state, skip = self._restore
                first = (offset - skip, state)
            else:
                first = (offset, self._source.state_dict())  # type: ignore[union-attr]
            self.snapshots = Snapshots(offset, first)

    def start(self, control: Control) -> None:
        """Start the thread that feeds the first channel from the source.

        Raises:
            Stopped: The pipeline is stopping already.
        """
        source, outbox, snapshots = self._source, self.channel, self.snapshots
        feeder = _Feeder(outbox, control)

        def run() -> None:
            try:
                if isinstance(source, AsyncIterable):
                    asyncio.run(_feed_async(source, feeder))
                elif snapshots is not None:
                    _feed_restorable(source, feeder, snapshots, self._restore)
                else:
                    _feed(iter(source), feeder)
            except Stopped:
                pass
            except BaseException as exc:  # noqa: BLE001 - every source error goes to the consumer
                control.fail(as_stage_error(exc), SOURCE_NOTE, stage=-1, seq=feeder.seq)
            finally:
                outbox.producer_done()

        control.thread(run, "ftpipe-source")
        self.counters = feeder.counters

    def stats(self, earlier: list[WorkerCounters] | None = None) -> StageStats | None:
        """The source's line in ``Pipeline.stats()``; None before it started.

        ``earlier``: the counters of the runs this pipeline ran before this one.
        """
        if self.counters is None:
            return None
        channel = self.channel
        counters = [*(earlier or []), self.counters]
        return merge("source", 1, "thread", counters, channel.occupancy(), channel.capacity)


class _Feeder:
    """Puts chunks into the first channel, numbering items and sizing the next chunk."""

    def __init__(self, outbox: Channel, control: Control) -> None:
        self.outbox = outbox
        self.control = control
        self.counters = WorkerCounters()  # written by the source thread only
        self.max_batch = max(1, outbox.capacity // 2)
        self.take = 1  # grows while the source is cheap, so a slow source is never held back
        self.seq = 0  # items put so far

    def put(self, chunk: list[Any], started: float) -> None:
        """Hand over ``chunk``, taken from the source since ``started``.

        Raises:
            Stopped: The pipeline is stopping.
        """
        if not chunk:
            return
        t1 = perf_counter()
        counters = self.counters
        counters.busy += t1 - started
        self.outbox.put(self.seq, self.seq + len(chunk), chunk)
        self.seq += len(chunk)
        counters.items_out += len(chunk)
        counters.blocked += perf_counter() - t1
        self.take = next_batch(self.take, (t1 - started) / len(chunk), self.max_batch)
        if self.control.stopping:
            raise Stopped


def _feed_restorable(
    source: Any, feeder: _Feeder, snapshots: Snapshots, restore: tuple[Any, int] | None
) -> None:
    """``_feed`` for a source that saves its position: restore it, then snapshot each chunk."""
    if restore is not None:
        state, skip = restore
        source.load_state_dict(state)
        iterator = iter(source)
        for _ in islice(iterator, skip):  # items after the snapshot the old run had used up
            pass
    else:
        iterator = iter(source)

    def snapshot() -> None:
        if feeder.seq:  # before the first chunk: the first snapshot (see Source)
            snapshots.add(feeder.seq, source.state_dict())

    _feed(iterator, feeder, snapshot)


def _feed(
    iterator: Iterator[Any], feeder: _Feeder, before_chunk: Callable[[], None] | None = None
) -> None:
    while True:
        if before_chunk is not None:
            before_chunk()
        chunk: list[Any] = []
        take = feeder.take
        t0 = perf_counter()
        try:
            # On an error, extend() keeps what it appended: those items still go out.
            chunk.extend(islice(iterator, take))
        except BaseException:
            feeder.put(chunk, t0)
            raise
        feeder.put(chunk, t0)
        if len(chunk) < take:
            return


class _Failed:
    """What the pump leaves after its last item when the source raised."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END: Any = object()  # what the pump leaves after the source's last item


class _Ready:
    """Items the pump took from the source that the feeder has not put yet.

    Both sides run on one event loop (one thread), so nothing here needs a lock.
    At most one side waits at a time (the pump while it is full, the feeder while
    it is empty), hence one wake-up slot.  Cheaper than an ``asyncio.Queue``,
    whose per-item coroutine and waiter bookkeeping doubled an async source's cost.
    """

    __slots__ = ("items", "limit", "_waiter")

    def __init__(self, limit: int) -> None:
        self.items: deque[Any] = deque()
        self.limit = limit
        self._waiter: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            if self._waiter is waiter:  # cancelled: the other side may wait now
                self._waiter = None

    def wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


async def _pump(source: AsyncIterable[Any], ready: _Ready) -> None:
    items = ready.items
    end: Any = _END
    try:
        async for item in source:
            items.append(item)
            ready.wake()  # the feeder runs once this task next waits, on the source or below
            if len(items) >= ready.limit:
                await ready.wait()
    except asyncio.CancelledError as exc:
        # Cancelled by the feeder (which no longer waits), or raised by the source
        # itself (which the feeder must hear about, or it would wait forever).
        end = _Failed(exc)
        raise
    except BaseException as exc:  # noqa: BLE001 - handed to the feeder, after the items
        end = _Failed(exc)
    finally:
        items.append(end)  # however the pump ends, the feeder finds a marker
        ready.wake()


async def _feed_async(source: AsyncIterable[Any], feeder: _Feeder) -> None:
    """Feed the channel from an async source, handing items on as soon as the source waits.

    The pump task runs until the source has to wait (or ``ready`` is full); only then
    does this coroutine wake, so a chunk holds exactly what was ready at that moment.
    Putting blocks the loop, which is what holds the source back when the channel is full.
    """
    ready = _Ready(feeder.max_batch)
    items = ready.items
    pump = asyncio.create_task(_pump(source, ready))
    try:
        while True:
            t0 = perf_counter()
            while not items:
                await ready.wait()
            chunk = list(items)  # never more than ready.limit, plus one marker
            items.clear()
            ready.wake()  # room again for a pump waiting on a full buffer
            last = chunk[-1]  # the pump leaves nothing after a marker
            if last is _END:
                feeder.put(chunk[:-1], t0)
                return
            if isinstance(last, _Failed):
                feeder.put(chunk[:-1], t0)
                raise last.error
            feeder.put(chunk, t0)
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
