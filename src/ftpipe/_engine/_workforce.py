"""How many workers a running stage wants, and which of its threads may retire.

::

    resize(n) ──► Workforce.size = n, wanted threads = n * per_worker
                    grow:   join() counts a thread in before it starts (the
                            output channel counted its producer first)
                    shrink: surplus threads retire() at the top of their loop,
                            between batches: never mid-item, and through the
                            normal producer-finish path (guarded's producer_done)
    switch (executor="auto") ──► a new generation: every thread of an older one retires

A worker asks ``retire(generation)`` once per batch.  The answer is almost always
no, read without the lock (two int attribute loads, atomic on every build; a stale
read only delays a retirement by one batch); yes is confirmed under the lock, so
exactly the surplus retires.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Workforce"]


class Workforce:
    """The live size of one stage: its concurrency, and its worker threads by generation.

    Args:
        size: The stage's concurrency (threads, executor workers, or calls in
            flight on an async stage's loop).
        threads: Worker threads started for it (each one producer of the output).
        per_worker: Threads per unit of concurrency (two submitting threads per
            worker of a pool the pipeline owns; 0 where the thread count is fixed).
    """

    def __init__(self, size: int, threads: int, per_worker: int) -> None:
        # Guards every field below; writers hold it, the hot-path reads in
        # retire() do not (see the module docstring).
        self._lock = threading.Lock()
        self.size = size
        self.per_worker = per_worker
        self.generation = 0
        self._target = threads
        self._live: dict[int, int] = {0: threads}
        self._started = threads  # numbers thread names
        self._on_drained: dict[int, Callable[[], None]] = {}

    def wanted(self, size: int) -> int:
        """Set the concurrency to ``size``; return how many threads to start now."""
        with self._lock:
            self.size = size
            if self.per_worker:
                self._target = size * self.per_worker
            return max(0, self._target - self._live.get(self.generation, 0))

    def join(self, generation: int) -> str:
        """Count in a thread of ``generation`` about to start; return its name's suffix."""
        with self._lock:
            self._live[generation] = self._live.get(generation, 0) + 1
            self._started += 1
            return str(self._started - 1)

    def gone(self, generation: int) -> None:
        """Count out a thread that ended without retiring (it failed to start)."""
        with self._lock:
            self._leave(generation)

    def retire(self, generation: int) -> bool:
        """Whether the calling worker (of ``generation``) should end now, between batches."""
        # Unlocked fast path: see the module docstring.
        if generation == self.generation and self._live.get(generation, 0) <= self._target:
            return False
        with self._lock:
            current = generation == self.generation
            if current and self._live.get(generation, 0) <= self._target:
                return False
            drained = self._leave(generation)
        if drained is not None:
            drained()
        return True

    def new_generation(self, size: int, per_worker: int, on_drained: Callable[[], None]) -> int:
        """Start a generation of ``size * per_worker`` threads; the older ones retire.

        ``on_drained`` runs (in the last retiring thread) once the previous
        generation's threads are all gone.
        """
        with self._lock:
            old = self.generation
            self.generation += 1
            self.size = size
            self.per_worker = per_worker
            self._target = size * per_worker
            if self._live.get(old, 0) > 0:
                self._on_drained[old] = on_drained
                on_drained = _nothing
        on_drained()
        return self.generation

    def _leave(self, generation: int) -> Callable[[], None] | None:
        # Called with the lock held.
        left = self._live.get(generation, 0) - 1
        self._live[generation] = left
        if left <= 0 and generation != self.generation:
            return self._on_drained.pop(generation, None)
        return None


def _nothing() -> None:
    pass
