"""``Pipeline``'s calls in the consumer's thread, and its move to threads (its base class).

::

    inline (start(): can_inline) ── _next_inline: a batch called here
      ── slow calls (Inline.batch says why) ──► _to_threads (for good)
    resize() while inline ──► _to_threads, the stage at its new size

Everything here runs under the pipeline's consumer lock; ``_inline`` says why.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any

from ._inline import Inline, continued
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
    _inline: Inline | None
    _inline_error: BaseException | None

    def _finish(self, *, holding_consumer_lock: bool = False) -> None:
        raise NotImplementedError  # Pipeline's

    def _next_inline(self, inline: Inline) -> Any:
        """The next output, the stages called here (consumer lock held); AGAIN: the run changed."""
        if self._inline_error is not None or inline.ended:
            error, self._inline_error = self._inline_error, None
            self._finish(holding_consumer_lock=True)
            if error is not None:
                raise error
            raise StopIteration
        try:
            values, error, why = inline.batch()
        except BaseException:  # Ctrl-C or SystemExit in a stage call: the consumer leaves
            self._finish(holding_consumer_lock=True)
            raise
        self._fetched += len(values)
        if error is not None:
            self._inline_error = error
        elif why is not None and not inline.ended:
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
            if self._state != "running":
                return  # closed meanwhile: close() stops the old run
            self._run = new
        weakref.finalize(self, new.stop)
        run.stop()
        run.join()  # it started no thread
        new.start()
