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
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

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
        self._cond = threading.Condition(threading.Lock())
        self._ready: deque[Any] = deque()
        self._pending: dict[int, tuple[int | None, list[Any]]] = {}
        self._pending_items = 0
        self._head = 0  # next producer sequence number the ordered channel releases
        self._popped = 0  # values handed to consumers so far
        self._producers = producers
        self._stopped = False
        self._waiting_getters = 0

    # -- producer side ---------------------------------------------------------------

    def put(self, start: int, end: int, values: list[Any], *, final: bool = True) -> None:
        """Add the outputs of producer inputs ``[start, end)``.

        With ``final=False`` the values are a first part of the outputs of input
        ``start`` (a generator that yields more than fits); ``end`` is ignored and
        the caller puts the rest later with the same ``start``.

        Raises:
            Stopped: The pipeline is stopping; the values are dropped.
        """
        with self._cond:
            if not self.ordered:
                while len(self._ready) >= self.capacity and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    raise Stopped
                self._ready.extend(values)
            else:
                while not self._stopped and not self._may_put(start, final):
                    self._cond.wait()
                if self._stopped:
                    raise Stopped
                if start != self._head:
                    # Only final ranges arrive out of order: partial output waits
                    # until its input is the head (see _may_put).
                    self._pending[start] = (end, values)
                    self._pending_items += len(values)
                    return
                self._ready.extend(values)
                if final:
                    self._head = end
                    self._release_pending()
            if self._waiting_getters:
                self._cond.notify_all()

    def _may_put(self, start: int, final: bool) -> bool:
        if start == self._head or not final:
            # The head can always go in once the consumer made room: nothing
            # else can make progress without it.  Partial output waits for head.
            if start != self._head:
                return False
            return len(self._ready) < self.capacity
        held = len(self._ready) + self._pending_items
        return start < self._head + self.capacity and held < self.capacity

    def _release_pending(self) -> None:
        while self._head in self._pending:
            end, values = self._pending.pop(self._head)
            self._pending_items -= len(values)
            self._ready.extend(values)
            assert end is not None
            self._head = end

    def producer_done(self) -> None:
        """Record that one producer finished; the last one ends the stream."""
        with self._cond:
            self._producers -= 1
            self._cond.notify_all()

    # -- consumer side ---------------------------------------------------------------

    def get(self, max_n: int) -> tuple[int, list[Any]]:
        """Take up to ``max_n`` values, blocking until at least one is there.

        Returns:
            ``(seq, values)``: ``seq`` numbers the first value by arrival order.

        Raises:
            EndOfStream: Every producer is done and nothing is left.
            Stopped: The pipeline is stopping.
        """
        with self._cond:
            while not self._ready:
                if self._stopped:
                    raise Stopped
                if self._producers <= 0 and not self._pending:
                    raise EndOfStream
                self._waiting_getters += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting_getters -= 1
            if self._stopped:
                raise Stopped
            ready = self._ready
            n = len(ready)
            if n <= max_n:
                values = list(ready)
                ready.clear()
            else:
                n = max_n
                values = [ready.popleft() for _ in range(n)]
            seq = self._popped
            self._popped += n
            # Producers wait only on a full channel; wake them now there is room.
            self._cond.notify_all()
            return seq, values

    # -- either side -----------------------------------------------------------------

    def stop(self) -> None:
        """Wake every waiter; from now on ``put`` and ``get`` raise ``Stopped``."""
        with self._cond:
            self._stopped = True
            self._ready.clear()
            self._pending.clear()
            self._pending_items = 0
            self._cond.notify_all()

    @property
    def waiting_getters(self) -> bool:
        """True when a consumer is blocked waiting: a hint to flush now, read unlocked."""
        # A stale read only delays or hastens one flush; it never loses an item.
        return self._waiting_getters > 0

    def occupancy(self) -> int:
        """Items held right now (ready plus waiting for reordering)."""
        with self._cond:
            return len(self._ready) + self._pending_items
