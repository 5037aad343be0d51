"""``CacheLoader``: replay the first batches from memory to find the training loop's ceiling.

::

    epoch 0:  batch 0 .. N-1  <- the wrapped loader (yielded and kept); then it is closed
              batch N .. S-1  <- replayed from memory, cycling over the N kept batches
    epoch 1+: batch 0 .. S-1  <- memory only; the wrapped loader is never iterated again

With loading gone, the step time it shows is the best any loader can give
("headspace"): if the real loader's step time is close, loading is not the
bottleneck; if it is far, the gap is what a faster pipeline can win.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from .._validate import positive_int

__all__ = ["CacheLoader"]


class CacheLoader:
    """Wrap a loader; after its first ``num_batches`` batches, replay them from memory.

    Use it to measure the training loop with data loading removed (SPDL calls
    this headspace analysis): swap ``loader`` for ``CacheLoader(loader, 16)``,
    time the steps after the first 16, compare with the real loader's.

    Batches are replayed as they are, the same objects: a loop that modifies
    its batch in place changes the cached copy too.  Put the cache after the
    copy to the device (``to_device``) to remove the transfer as well.

    Args:
        loader: Any iterable of batches (a ``PipelineLoader``, a ``DataLoader``, a list).
        num_batches: How many batches to keep (they all stay in memory).
        steps: Batches per epoch (default: ``len(loader)``).

    Raises:
        TypeError: ``num_batches`` or ``steps`` is not an int, or ``steps`` is
            not given and ``loader`` has no ``len()``.
        ValueError: ``num_batches`` or ``steps`` is below 1.
    """

    def __init__(
        self, loader: Iterable[Any], num_batches: int, *, steps: int | None = None
    ) -> None:
        positive_int(num_batches, "num_batches")
        if steps is None:
            try:
                steps = len(loader)  # type: ignore[arg-type]
            except TypeError:
                raise TypeError(
                    f"CacheLoader needs steps= (batches per epoch): the loader "
                    f"({type(loader).__name__}) has no len()"
                ) from None
        positive_int(steps, "steps")
        self._loader = loader
        self._num_batches = num_batches
        self._steps = steps
        self._lock = threading.Lock()  # guards _cache / _complete: epochs may overlap
        self._cache: list[Any] = []
        self._complete = False

    @property
    def cached(self) -> int:
        """How many batches are held in memory."""
        with self._lock:
            return len(self._cache)

    @property
    def complete(self) -> bool:
        """True once the cache is filled; from then on the wrapped loader is never touched."""
        with self._lock:
            return self._complete

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to the wrapped loader (if it has ``set_epoch``), for drop-in use."""
        set_epoch = getattr(self._loader, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def __len__(self) -> int:
        return self._steps

    def __iter__(self) -> Iterator[Any]:
        return self._epoch()

    def _epoch(self) -> Iterator[Any]:
        step = 0
        with self._lock:
            cache = None if not self._complete else list(self._cache)
        if cache is None:
            # Fill from the start: an earlier epoch abandoned before the cache was
            # full leaves nothing behind, so batches are never kept twice.
            cache = []
            batches = iter(self._loader)
            try:
                for batch in batches:
                    cache.append(batch)
                    yield batch
                    step += 1
                    if step >= self._num_batches or step >= self._steps:
                        break
            finally:
                # Stop the loader's workers: the point is to measure without them.
                close = getattr(batches, "close", None)
                if callable(close):
                    close()
            # Reached once the cache is full, or the loader ran out first (keep what it had).
            with self._lock:
                if not self._complete:
                    self._cache, self._complete = cache, True
        if not cache:
            return
        while step < self._steps:
            yield cache[step % len(cache)]
            step += 1
