"""``Pipeline``'s moves between its threads and the consumer's thread (its base class).

::

    on threads ── every WATCH_EVERY outputs, _look: cheap? ── the source lends its
      iterator ──► what is in flight drains ──► _drained ──► inline (Inline)
                                                        └──► a stage was resized: new threads
    inline ── _next_inline: a batch called here ── a slow window ──► _to_threads (for good)
    resize() while inline ──► _to_threads, the stage at its new size

Everything here runs under the pipeline's consumer lock; ``_inline`` says why.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any

from ._config import PipelineConfig
from ._inline import SLOW, Inline, Watch, continued
from ._run import Run

__all__ = ["AGAIN", "Handover"]

AGAIN: Any = object()  # the run changed under the consumer: look again


class Handover:
    """The moves; ``Pipeline`` holds the state and the lifecycle."""

    _lock: threading.Lock
    _state: str
    _run: Run | None
    _local: deque[Any]
    _fetched: int
    _watch: Watch | None
    _cost: float
    _inline: Inline | None
    _inline_error: BaseException | None
    _quiet: PipelineConfig | None

    def _finish(self, *, holding_consumer_lock: bool = False) -> None:
        raise NotImplementedError  # Pipeline's

    def _look(self, run: Run) -> None:
        """The watch's look at the counters: the source lends if the calls are cheap."""
        assert self._watch is not None
        per_item = self._watch.cheap(self._fetched)
        if per_item is not None:
            self._watch = None
            self._cost = per_item
            run.source.lend()  # what is in flight drains; then _drained

    def _drained(self, run: Run) -> None:
        """The run's source lent its iterator and every item in flight reached the
        consumer: go on inline, or (a stage was resized meanwhile) on new threads."""
        iterator = run.source.lent
        assert iterator is not None
        with run.resize_lock:
            sizes = {s.config.name: s.workforce.size for s in run.stages}
            if all(size == 1 for size in sizes.values()):
                self._quiet = run.config
                self._inline = Inline(run, iterator, self._fetched - run.config.start, self._cost)
                return
        self._to_threads(run, iterator, sizes, "a stage was resized")

    def _next_inline(self, inline: Inline) -> Any:
        """The next output, the stages called here (consumer lock held); AGAIN: the run changed."""
        if self._inline_error is not None or inline.ended:
            error, self._inline_error = self._inline_error, None
            self._finish(holding_consumer_lock=True)
            if error is not None:
                raise error
            raise StopIteration
        try:
            values, error, per_item = inline.batch()
        except BaseException:  # Ctrl-C or SystemExit in a stage call: the consumer leaves
            self._finish(holding_consumer_lock=True)
            raise
        self._fetched += len(values)
        if error is not None:
            self._inline_error = error
        elif per_item > SLOW and not inline.ended:
            why = f"calls took {per_item * 1e6:.0f} us per item"
            self._to_threads(inline.run, inline.iterator, {}, why)
        if not values:
            return AGAIN
        self._local.extend(values[1:])
        return values[0]

    def _to_threads(
        self, run: Run, iterator: Iterator[Any], sizes: dict[str, int], why: str
    ) -> None:
        """Go on, for good, in a new run on threads (consumer lock held; see ``continued``)."""
        new = continued(run, self._fetched - run.config.start, iterator, sizes, why)
        with run.resize_lock, self._lock:
            self._inline = None
            self._quiet = run.config
            if self._state != "running":
                return  # closed meanwhile: close() stops the old run
            self._run = new
        weakref.finalize(self, new.stop)
        run.stop()
        run.join()  # its threads ended when it drained
        new.start()
