"""Worker pools that outlive one pipeline: a loader's stages keep theirs from epoch to epoch.

::

    epoch n:   config ──attach()──► each "process" / "interpreter" stage gets a lease
               (kind names)          on its stage's pool (created once: stage name,
                                     kind and concurrency match, the pool is healthy)
               Pipeline(leased config) runs; it never shuts a lease's pool down
    epoch n+1: attach() retires epoch n's leases first: queued calls cancelled, calls
               still running (a break mid-epoch) get SETTLE_S to end, else the pool is
               stopped and replaced; a pool with a dead worker is replaced; a stage
               whose settings changed gets a new pool, the old one is stopped
    close():   every pool stopped as the engine stops its own (running calls abandoned)

A lease is a ``concurrent.futures.Executor`` with the pool's ``max_workers``, so
the engine gives the stage the same submitting threads (two per worker) as for
a kind name.  It records its epoch's futures: that is how the next epoch knows
the pool is free of work nobody wants.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, replace
from time import monotonic
from typing import Any

from .._engine import ExecutorKind, PipelineConfig, StageConfig, executor_kind
from .._engine._setup import create_executor
from .._priority import Scheduling
from ._pool import WorkerPool

__all__ = ["SETTLE_S", "PersistentPools"]

# How long a new epoch waits for calls an abandoned epoch left running before it
# stops that pool and starts a new one: a pool's restart costs about this much.
SETTLE_S = 2.0


class _Lease(Executor):
    """One pipeline's use of a persistent pool: submits go through, and are remembered."""

    def __init__(self, pool: Executor, kind_name: str) -> None:
        self._pool = pool
        self.executor_kind_name = kind_name  # what stats call the stage's executor
        self._lock = threading.Lock()  # guards _futures and _retired against submit()
        self._futures: set[Future[Any]] = set()
        self._retired = False

    @property
    def max_workers(self) -> int | None:
        """The pool's workers: the engine sizes the stage's submitting threads on it."""
        return getattr(self._pool, "max_workers", None)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            if self._retired:
                # Only a stopped pipeline's thread gets here; it discards the error.
                raise RuntimeError("this epoch is over: its pool serves the next one")
            future = self._pool.submit(fn, *args, **kwargs)
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing: the pool belongs to ``PersistentPools``, not to one pipeline."""

    def retire(self, deadline: float) -> bool:
        """Refuse new calls, cancel queued ones; True once none runs (waits until ``deadline``)."""
        with self._lock:
            self._retired = True
            futures = list(self._futures)
        for future in futures:
            future.cancel()
        _, running = wait(futures, timeout=max(0.0, deadline - monotonic()))
        return not running


@dataclass(eq=False)
class _Slot:
    """A stage's pool, what it was made for, and the lease of the last epoch."""

    key: tuple[Any, ...]  # (kind name, concurrency, initializer, initargs, scheduling)
    kind: ExecutorKind
    pool: Executor
    lease: _Lease | None = None


class PersistentPools:
    """The pools of a loader's executor stages, created once and reused by every epoch.

    Only stages whose executor is a kind name registered by ``ftpipe.executors``
    (``"process"``, ``"interpreter"``) are kept; thread stages and executors the
    user passed are left as they are.  One user at a time calls ``attach``;
    ``close`` may come from any thread, or from garbage collection.
    """

    def __init__(self, lookup: Callable[[str], ExecutorKind | None] = executor_kind) -> None:
        self._lookup = lookup
        self._lock = threading.Lock()  # guards _slots and _closed
        self._slots: dict[str, _Slot] = {}
        self._closed = False
        self._finalizer = weakref.finalize(self, _stop_all, self._slots, self._lock)

    def attach(self, config: PipelineConfig) -> PipelineConfig:
        """Return ``config`` with each pool stage's kind name replaced by a lease on its pool.

        Retires the previous epoch's leases first; the pipeline that used them
        must be closed.  Returns ``config`` itself when no stage has a pool.

        Raises:
            RuntimeError: ``close()`` was called.
        """
        self._retire_leases()
        stages: list[StageConfig] = []
        used: set[str] = set()
        for stage in config.stages:
            kind = self._lookup(stage.executor) if isinstance(stage.executor, str) else None
            if kind is None:
                stages.append(stage)
                continue
            used.add(stage.name)
            stages.append(replace(stage, executor=self._lease(stage, kind, config.scheduling)))
        with self._lock:
            unused = [self._slots.pop(name) for name in list(self._slots) if name not in used]
        for slot in unused:  # a stage the pipeline no longer has
            _stop(slot)
        if not used:
            return config
        return replace(config, stages=tuple(stages))

    def _lease(self, stage: StageConfig, kind: ExecutorKind, scheduling: Scheduling) -> _Lease:
        # New workers for a new initializer (or its arguments), concurrency or priority:
        # a lowered worker stays low.
        key = (kind.name, stage.concurrency, stage.initializer, stage.initargs, scheduling)
        with self._lock:
            if self._closed:
                raise RuntimeError("these pools are closed")
            slot = self._slots.get(stage.name)
            if slot is not None and (slot.key != key or not _healthy(slot.pool)):
                del self._slots[stage.name]
                old, slot = slot, None
            else:
                old = None
        if old is not None:
            _stop(old)  # settings changed, or a worker died: a fresh pool
        if slot is None:
            slot = _Slot(key, kind, create_executor(kind, stage, scheduling))
        slot.lease = _Lease(slot.pool, kind.name)
        with self._lock:
            closed = self._closed
            if not closed:
                self._slots[stage.name] = slot
        if closed:  # close() raced this call
            _stop(slot)
            raise RuntimeError("these pools are closed")
        return slot.lease

    def _retire_leases(self) -> None:
        with self._lock:
            slots = list(self._slots.items())
        deadline = monotonic() + SETTLE_S
        for name, slot in slots:
            if slot.lease is None or slot.lease.retire(deadline):
                continue
            # Calls of an abandoned epoch still run: the next epoch would queue behind them.
            with self._lock:
                if self._slots.get(name) is slot:
                    del self._slots[name]
            _stop(slot)

    def pools(self) -> dict[str, Executor]:
        """The pool of every stage kept now, by stage name (for tests and statistics)."""
        with self._lock:
            return {name: slot.pool for name, slot in self._slots.items()}

    def close(self) -> None:
        """Stop every pool: queued calls are cancelled, running ones abandoned (idempotent)."""
        with self._lock:
            self._closed = True
        self._finalizer()


def _healthy(pool: Executor) -> bool:
    # Pools of other kinds cannot say: they are kept until they fail a call.
    return pool._healthy() if isinstance(pool, WorkerPool) else True  # noqa: SLF001


def _stop(slot: _Slot) -> None:
    # As the engine releases the pools it creates: a closing loader wants no results.
    if slot.kind.stop is not None:
        slot.kind.stop(slot.pool)
    else:
        slot.pool.shutdown(wait=True, cancel_futures=True)


def _stop_all(slots: dict[str, _Slot], lock: threading.Lock) -> None:
    with lock:
        taken = list(slots.values())
        slots.clear()
    for slot in taken:
        _stop(slot)
