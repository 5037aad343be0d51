"""What a channel keeps for checkpoints: which producer inputs its outputs came from.

::

    ordered channel ── Ledger: (outputs released, producer inputs done) at each range
        released; committed(o) -> (inputs, extra): the first o outputs are those of the
        inputs before ``inputs`` plus the first ``extra`` outputs of input ``inputs``
    unordered channel ── Lineage (a producer with one output per input): (first output,
        first input, count) for each put, in delivery order; done(o) -> (watermark,
        extras): the inputs whose output is among the first o, as every input before
        ``watermark`` plus the later ``extras``

Both are read and written under their channel's lock; both forget what is before
the count they are asked about (counts never go back).  Output numbers count from
this run's first delivered output; input numbers from this run's first input.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["Ledger", "Lineage"]


class Ledger:
    """An ordered channel's records of (outputs released, producer inputs done)."""

    __slots__ = ("_records",)

    def __init__(self, drop: int) -> None:
        # ``drop`` outputs of the first inputs are made again and dropped (a resumed
        # run): they count as released before output 0.
        self._records: deque[tuple[int, int]] = deque([(-drop, 0)])

    def advance(self, released: int, head: int) -> None:
        """Every input before ``head`` is done, and the outputs before ``released``."""
        self._records.append((released, head))

    def committed(self, outputs: int) -> tuple[int, int]:
        """``(inputs, extra)`` for the first ``outputs`` outputs (see the module)."""
        records = self._records
        while len(records) > 1 and records[1][0] <= outputs:
            records.popleft()
        released, head = records[0]
        return head, outputs - released


class Lineage:
    """An unordered channel's map from delivered outputs to the inputs that made them.

    Its producer makes exactly one output per input (a function stage), so the
    outputs of a put of inputs ``[start, end)`` are theirs, in order.
    """

    __slots__ = ("_done", "_put", "_segments", "_watermark")

    def __init__(self, done: Iterable[int] = ()) -> None:
        """``done``: inputs a checkpointed run had finished (this run skips them)."""
        self._segments: deque[tuple[int, int, int]] = deque()  # (first output, input, n)
        self._put = 0  # outputs put so far
        self._watermark = 0
        self._done = set(done)
        self._settle()

    def add(self, start: int, end: int, count: int) -> None:
        """Record a put of the ``count`` outputs of inputs ``[start, end)``."""
        assert count == end - start, "an ordered=False stage under checkpoints: one output each"
        if count:
            self._segments.append((self._put, start, count))
            self._put += count

    def done(self, outputs: int) -> tuple[int, list[int]]:
        """``(watermark, extras)``: the inputs whose output is among the first ``outputs``."""
        segments, done = self._segments, self._done
        while segments and segments[0][0] < outputs:
            first, start, count = segments[0]
            taken = min(count, outputs - first)
            done.update(range(start, start + taken))
            if taken < count:  # the rest of this put is not delivered yet
                segments[0] = (first + taken, start + taken, count - taken)
                break
            segments.popleft()
        self._settle()
        return self._watermark, sorted(done)

    def _settle(self) -> None:
        done, mark = self._done, self._watermark
        while mark in done:
            done.discard(mark)
            mark += 1
        self._watermark = mark
