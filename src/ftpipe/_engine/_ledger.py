"""What a channel keeps for checkpoints: which producer inputs its outputs came from.

::

    ordered channel ── Ledger: (outputs released, producer inputs done) at each range
        released; committed(o) -> (inputs, extra): the first o outputs are those of the
        inputs before ``inputs`` plus the first ``extra`` outputs of input ``inputs``
    unordered channel ── Lineage (a producer with one output per input): the inputs
        [start, end) of each put, in delivery order; done(o) -> (watermark,
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

    __slots__ = ("_counted", "_done", "_watermark", "puts")

    def __init__(self, done: Iterable[int] = ()) -> None:
        """``done``: inputs a checkpointed run had finished (this run skips them)."""
        # (start, end): the inputs of each put, in delivery order.  The channel appends
        # to it under its lock (a deque append: this is on every put's path).
        self.puts: deque[tuple[int, int]] = deque()
        self._counted = 0  # outputs of the puts no longer in ``puts``
        self._watermark = 0
        self._done = set(done)
        self._settle()

    def done(self, outputs: int) -> tuple[int, list[int]]:
        """``(watermark, extras)``: the inputs whose output is among the first ``outputs``."""
        puts, done = self.puts, self._done
        while puts and self._counted < outputs:
            start, end = puts[0]
            taken = min(end - start, outputs - self._counted)
            self._counted += taken
            if start <= self._watermark:  # in order: the watermark moves, no set needed
                self._watermark = max(self._watermark, start + taken)
            else:
                done.update(range(start, start + taken))
            if start + taken < end:  # the rest of this put is not delivered yet
                puts[0] = (start + taken, end)
                break
            puts.popleft()
        self._settle()
        return self._watermark, sorted(done)

    def _settle(self) -> None:
        done, mark = self._done, self._watermark
        while mark in done:
            done.discard(mark)
            mark += 1
        self._watermark = mark
