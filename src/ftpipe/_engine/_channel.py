"""A bounded buffer between two stages that hands items over in batches.

::

    producer workers                                   consumer workers
    put(start, end, [values])  ──►  ready deque  ──►  get(max_n) -> (seq, [values])
                  │                      ▲
                  └──► pending {start: (end, values)} (ordered only: out-of-order
                       ranges wait here until every earlier range has arrived)

Producers tag what they put with the range of *their* input sequence numbers
that produced it, so an ordered channel can restore input order however the
producer's workers interleave.  Consumers receive values numbered by arrival
(``seq`` of the first value), which become the sequence numbers of the next
stage.  One lock per channel, taken once per batch, never while user code
runs: the price of a hand-off is paid per batch, not per item.

Checkpoints (``track``, ``_ledger``): an ordered channel also keeps a ledger of
``(outputs released, producer inputs done)`` at each range it releases, so
``committed(o)`` says which producer inputs the first ``o`` outputs came from:
the inputs done, and how many outputs of the next input (a generator stopped
mid-expansion, a batch put in part) were among them.  An unordered channel
(whose producer makes one output per input) keeps the inputs of each put in
delivery order instead: ``done(o)``.  A resumed run's ``skip(numbers)`` drops the
outputs at those numbers as consumers reach them, numbering the rest as before.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from ._ledger import Ledger, Lineage
from ._waker import Waker, discard, my_waker, wake_all

__all__ = ["Channel", "EndOfStream", "Stopped"]


class Stopped(Exception):
    """Raised by a channel operation once the pipeline is stopping."""


class EndOfStream(Exception):
    """Raised by ``Channel.get`` once every producer is done and the buffer is empty."""


class Channel:
    """Bounded, batched, optionally order-restoring hand-off between stages.

    Args:
        capacity: Items the channel holds before producers block.  An ordered
            channel also bounds how far ahead of the oldest missing range a
            producer may run (the reordering window).
        ordered: Restore producers' input order.
        producers: How many producers call ``producer_done`` before the stream ends.
    """

    def __init__(self, capacity: int, *, ordered: bool, producers: int = 1) -> None:
        self.capacity = capacity
        self.ordered = ordered
        # Guards every field below.  Held for a few list operations, never while
        # waiting: waiters register under it, release it, then sleep on a _Signal.
        self._lock = threading.Lock()
        self._ready: deque[Any] = deque()
        self._pending: dict[int, tuple[int | None, list[Any]]] = {}
        self._pending_items = 0
        self._head = 0  # next producer sequence number the ordered channel releases
        self._popped = 0  # values handed to consumers so far
        self._producers = producers
        self._stopped = False
        self._cutoff: int | None = None  # see cut()
        self._getters: list[Waker] = []  # consumers sleeping until items arrive
        self._putters: list[Waker] = []  # producers sleeping until there is room
        # Checkpoints (see track()): where outputs came from, the first outputs still to
        # drop and the numbers of later ones, which a checkpointed run had delivered.
        self._ledger: Ledger | None = None
        self._lineage: Lineage | None = None
        self._puts: deque[tuple[int, int]] | None = None  # the lineage's, appended to here
        self._drop = 0
        self._holes: deque[int] = deque()

    # -- producer side ---------------------------------------------------------------

    def put(self, start: int, end: int, values: list[Any], *, final: bool = True) -> None:
        """Add the outputs of producer inputs ``[start, end)``.

        With ``final=False`` the values are a first part of the outputs of input
        ``start`` (a generator that yields more than fits); ``end`` is ignored and
        the caller puts the rest later with the same ``start``.

        Raises:
            Stopped: The pipeline is stopping; the values are dropped.
        """
        waker: Waker | None = None
        while True:
            with self._lock:
                if waker is not None:
                    discard(self._putters, waker)
                if self._stopped:
                    raise Stopped
                if self._cutoff is not None and start >= self._cutoff:
                    return  # produced by an input at or after a failure: never delivered
                if self._may_put(start, final):
                    self._insert(start, end, values, final)
                    wake = list(self._getters)
                    if self.ordered:
                        # A moved head may open the reordering window for a waiting producer.
                        wake += self._putters
                    break
                waker = my_waker()
                self._putters.append(waker)
            self._sleep(waker, self._putters)
        wake_all(wake)

    def _may_put(self, start: int, final: bool) -> bool:
        if not self.ordered:
            return len(self._ready) < self.capacity
        if start == self._head or not final:
            # The head can always go in once the consumer made room: nothing
            # else can make progress without it.  Partial output waits for head.
            if start != self._head:
                return False
            return len(self._ready) < self.capacity
        held = len(self._ready) + self._pending_items
        return start < self._head + self.capacity and held < self.capacity

    def _insert(self, start: int, end: int, values: list[Any], final: bool) -> None:
        if not self.ordered:
            self._ready.extend(values)
            if self._puts is not None:  # one output per input: these are theirs
                self._puts.append((start, end))
        elif start != self._head:
            # Only final ranges arrive out of order: partial output waits until
            # its input is the head (see _may_put).
            self._pending[start] = (end, values)
            self._pending_items += len(values)
        else:
            self._release(values)
            if final:
                self._advance(end)
                while self._head in self._pending:
                    pending_end, pending = self._pending.pop(self._head)
                    self._pending_items -= len(pending)
                    self._release(pending)
                    assert pending_end is not None
                    self._advance(pending_end)

    def _release(self, values: list[Any]) -> None:
        if self._drop:
            dropped = values[: self._drop]
            self._drop -= len(dropped)
            values = values[len(dropped) :]
        self._ready.extend(values)

    def _advance(self, head: int) -> None:
        self._head = head
        if self._ledger is not None:
            # Outputs still to drop count as not released yet (numbered below 0).
            self._ledger.advance(self._popped + len(self._ready) - self._drop, head)

    # -- checkpoints -----------------------------------------------------------------

    def track(self, drop: int = 0, done: tuple[int, ...] = ()) -> None:
        """Keep what ``committed`` (ordered) or ``done`` (unordered) reads.

        Called before the producers start.  Ordered: the first ``drop`` outputs of
        the producer's first inputs were delivered by the run this one resumes:
        they are made again (from the same inputs) and dropped here, so the ledger
        starts ``drop`` back.  Unordered: the producer inputs ``done`` were finished
        by that run (its input channel skips them).
        """
        if self.ordered:
            self._drop = drop
            self._ledger = Ledger(drop)
        else:
            assert not drop, "an unordered channel's producer makes one output per input"
            self._lineage = Lineage(done)
            self._puts = self._lineage.puts

    @property
    def keeps_lineage(self) -> bool:
        """Whether each put must carry its own inputs' outputs (unordered, tracked)."""
        return self._lineage is not None

    def skip(self, numbers: tuple[int, ...]) -> None:
        """Drop the outputs at ``numbers`` (sorted) as consumers reach them; numbered
        as if delivered.  Called before the producers start; a FIFO channel only."""
        self._holes.extend(numbers)

    def committed(self, outputs: int) -> tuple[int, int]:
        """``(inputs, extra)``: the first ``outputs`` outputs are those of producer inputs
        before ``inputs`` plus the first ``extra`` outputs of input ``inputs`` (ordered).

        Forgets what is before: call it with a count that never goes back.
        """
        with self._lock:
            assert self._ledger is not None, "track() an ordered channel first"
            return self._ledger.committed(outputs)

    def done(self, outputs: int) -> tuple[int, list[int]]:
        """``(watermark, extras)``: the producer inputs whose output is among the first
        ``outputs`` (unordered; ``Lineage.done``).  Counts never go back."""
        with self._lock:
            assert self._lineage is not None, "track() an unordered channel first"
            return self._lineage.done(outputs)

    def add_producer(self) -> bool:
        """Count one more producer (a stage growing); False once the stream ended or stopped.

        Must be called before the new producer starts, so the stream cannot end
        between its start and its first put.
        """
        with self._lock:
            if self._stopped or self._producers <= 0:
                return False
            self._producers += 1
            return True

    def ended(self) -> bool:
        """Whether every producer finished (or the pipeline stopped)."""
        with self._lock:
            return self._stopped or self._producers <= 0

    def producer_done(self) -> None:
        """Record that one producer finished; the last one ends the stream."""
        with self._lock:
            self._producers -= 1
            wake = list(self._getters) if self._producers <= 0 else []
        wake_all(wake)

    # -- consumer side ---------------------------------------------------------------

    def get(self, max_n: int) -> tuple[int, list[Any]]:
        """Take up to ``max_n`` values, blocking until at least one is there.

        Returns:
            ``(seq, values)``: ``seq`` numbers the first value by arrival order.

        Raises:
            EndOfStream: Every producer is done and nothing is left.
            Stopped: The pipeline is stopping.
        """
        waker: Waker | None = None
        while True:
            with self._lock:
                if waker is not None:
                    discard(self._getters, waker)
                if self._stopped:
                    raise Stopped
                ready, most, passed = self._ready, max_n, False
                if self._holes:
                    most, passed = self._pass_holes(max_n)
                if ready:
                    n = len(ready)
                    if n <= most:
                        values = list(ready)
                        ready.clear()
                    else:
                        n = most
                        values = [ready.popleft() for _ in range(n)]
                    seq = self._popped
                    self._popped += n
                    wake = list(self._putters)
                    break
                if self._producers <= 0 and not self._pending:
                    raise EndOfStream
                waker = my_waker()
                self._getters.append(waker)
                room = list(self._putters) if passed else None  # dropped values made room
            if room:
                wake_all(room)
            self._sleep(waker, self._getters)
        wake_all(wake)
        return seq, values

    def _pass_holes(self, max_n: int) -> tuple[int, bool]:
        """Drop what is at the next holes; return ``max_n`` cut to stop before the next
        hole, and whether anything was dropped."""
        ready, holes, popped = self._ready, self._holes, self._popped
        while holes and ready and holes[0] == self._popped:
            holes.popleft()
            ready.popleft()
            self._popped += 1
        return (min(max_n, holes[0] - self._popped) if holes else max_n), popped < self._popped

    def _sleep(self, waker: Waker, waiters: list[Waker]) -> None:
        # Waiters stay registered until they deregister themselves under the lock
        # (the next pass of their loop), and every wake-up goes to all registered
        # waiters: a wake-up lost to a Ctrl-C between taking the list and writing
        # to the eventfds is repeated by the next state change or stop().
        try:
            waker.wait()
        except BaseException:
            with self._lock:
                discard(waiters, waker)
            raise

    # -- either side -----------------------------------------------------------------

    def cut(self, seq: int) -> None:
        """Deliver only what producer inputs before ``seq`` produce, then end the stream.

        Used when input ``seq`` failed: outputs of earlier inputs still reach the
        consumer (in order for an ordered channel), then the error.
        """
        with self._lock:
            self._cutoff = seq if self._cutoff is None else min(seq, self._cutoff)
            for start in [s for s in self._pending if s >= self._cutoff]:
                self._pending_items -= len(self._pending.pop(start)[1])
            wake = self._putters + self._getters
        wake_all(wake)

    def stop(self) -> None:
        """Wake every waiter; from now on ``put`` and ``get`` raise ``Stopped``."""
        with self._lock:
            self._stopped = True
            self._ready.clear()
            self._pending.clear()
            self._pending_items = 0
            wake = self._getters + self._putters
        wake_all(wake)

    def occupancy(self) -> int:
        """Items held right now (ready plus waiting for reordering)."""
        with self._lock:
            return len(self._ready) + self._pending_items
