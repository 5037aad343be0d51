"""What a stage call can ask about itself: ``worker_info()`` and ``item_seed()``.

::

    thread stage worker ── set_worker(info, key) once ──► _local.info / _local.key
        each batch, seeded only: positioned(items, seq0) ── iterating sets _local.pos
    async stage ── set_worker once in the loop thread; each call: POSITION.set(seq) (its task's own)
    executor chunk ── call_chunk(fn, items, kind, ChunkContext) in the worker (a thread, a
        process, a subinterpreter, a Dask worker): enter_chunk .. leave_chunk around the calls;
        pools the stage creates run a StageStart initializer in each worker first, which
        records the worker's index (_local.worker) and runs the user's initializer
    the detector's calls ── enter_probe(key) .. leave_chunk; set_position(k) before each
        call: item seeds as in a stage, worker_info() None (not a stage call)

    item_seed() = blake2b(position, key=stage_key(seed, epoch, stage name))[:8]

Everything is thread-local (or task-local for async calls), so nothing is shared
between workers and nothing relies on the GIL.  This module imports nothing of
the engine: it is imported in every worker process and subinterpreter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from hashlib import blake2b
from typing import Any, NamedTuple, overload

__all__ = [
    "POSITION",
    "ChunkContext",
    "StageStart",
    "WorkerInfo",
    "PROBE_KEY",
    "enter_chunk",
    "enter_probe",
    "item_seed",
    "leave_chunk",
    "positioned",
    "set_position",
    "set_worker",
    "stage_key",
    "worker_info",
]

# Per thread: info (WorkerInfo | None), key (bytes | None: the stage's seed key),
# pos (int: the input being called, seeded thread stages and chunks), worker (int:
# this thread's index in a pool the stage created, set by StageStart).
_local = threading.local()
# The input being called by an async stage: each call is its own task, and a task
# runs in its own copy of the context, so concurrent calls on one thread do not mix.
POSITION: ContextVar[int | None] = ContextVar("ftpipe_item_position", default=None)


@dataclass(frozen=True)
class WorkerInfo:
    """Which stage and worker a stage call runs in (``ftpipe.worker_info()``).

    Attributes:
        stage: The stage's name.
        worker: This worker's index, ``0 <= worker < concurrency`` until the stage
            is resized (a worker a resize starts gets a new number): the thread of
            a thread stage, the process or subinterpreter of a ``"process"`` /
            ``"interpreter"`` stage.  An async stage is one worker (0) running
            ``concurrency`` calls on one event loop.  None on an executor the
            user passed (a ``ThreadPoolExecutor``, Dask), which does not say.
        concurrency: The stage's concurrency now (a resize while the stage runs
            shows from the worker's next batch on).
    """

    stage: str
    worker: int | None
    concurrency: int


class ChunkContext(NamedTuple):
    """What travels with each chunk an executor stage submits (small, picklable)."""

    stage: str
    concurrency: int
    key: bytes | None  # the stage's seed key; None without a seed
    seq0: int  # the stage's input number of the chunk's first item


def stage_key(seed: int, epoch: int, stage: str) -> bytes:
    """The key every item seed of one stage is derived with (stable across runs and machines)."""
    return blake2b(f"ftpipe/{seed}/{epoch}/{stage}".encode(), digest_size=16).digest()


# The key of the detector's calls: a stage function that seeds itself with item_seed()
# can be measured outside a pipeline (the seeds differ from a seeded pipeline's).
PROBE_KEY = stage_key(0, 0, "ftpipe.diagnose")


def _derive(key: bytes, position: int) -> int:
    return int.from_bytes(
        blake2b(position.to_bytes(8, "little"), key=key, digest_size=8).digest(), "little"
    )


def worker_info() -> WorkerInfo | None:
    """Return which stage and worker the current stage call runs in; None outside a stage call.

    Like ``torch.utils.data.get_worker_info()``: works in stage functions and
    ``initializer=`` functions on every executor (engine threads, async stages,
    ``"process"`` and ``"interpreter"`` workers, any ``concurrent.futures.Executor``).
    """
    return getattr(_local, "info", None)


def item_seed() -> int:
    """Return the seed of the item the current stage call works on (an int in ``[0, 2**64)``).

    Derived from ``PipelineBuilder(seed=...)``, the epoch, the stage's name and the
    item's position in the stage's input, so the same item gets the same seed at any
    concurrency, on any executor, in every run.  Seed your generator with it:
    ``random.Random(ftpipe.item_seed())``, ``numpy.random.default_rng(ftpipe.item_seed())``.

    Raises:
        RuntimeError: Called outside a stage call, or the pipeline has no seed.
    """
    key = getattr(_local, "key", None)
    if key is None:
        if getattr(_local, "info", None) is None:
            raise RuntimeError("ftpipe.item_seed() is only available inside a stage call")
        raise RuntimeError(
            "ftpipe.item_seed(): the pipeline has no seed; build it with "
            "PipelineBuilder(seed=<int>) (and epoch=... to vary it per epoch)"
        )
    pos = POSITION.get()
    if pos is None:
        pos = getattr(_local, "pos", None)
        if pos is None:
            raise RuntimeError(
                "ftpipe.item_seed() is only available while a stage function is called on "
                "an item (not in an initializer)"
            )
    return _derive(key, pos)


def set_worker(info: WorkerInfo | None, key: bytes | None) -> None:
    """Set what the calling thread's stage calls see (a thread or async stage's worker)."""
    _local.info = info
    _local.key = key
    _local.pos = None


def worker_resized(concurrency: int) -> None:
    """Let the calling worker's ``worker_info()`` show its stage's concurrency after a resize."""
    info = getattr(_local, "info", None)
    if info is not None and info.concurrency != concurrency:
        _local.info = replace(info, concurrency=concurrency)


class _Positioned(Sequence[Any]):
    """A batch of inputs; iterating it sets the thread's position to each item's number.

    ``map(fn, positioned)`` draws an item just before calling ``fn`` on it, so the
    call sees its own position; a retry right after a failure still sees it.
    """

    __slots__ = ("_items", "_seq0")

    def __init__(self, items: Sequence[Any], seq0: int) -> None:
        self._items = items
        self._seq0 = seq0

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> _Positioned: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            start, _, step = i.indices(len(self._items))
            assert step == 1, "only contiguous slices"
            return _Positioned(self._items[i], self._seq0 + start)
        return self._items[i]

    def __iter__(self) -> Iterator[Any]:
        local = _local
        for i, item in enumerate(self._items, self._seq0):
            local.pos = i
            yield item


def positioned(items: Sequence[Any], seq0: int, key: bytes | None) -> Sequence[Any]:
    """``items`` as they are, or (with a seed key) a sequence that sets each item's position."""
    return items if key is None else _Positioned(items, seq0)


def enter_chunk(ctx: ChunkContext) -> tuple[Any, Any]:
    """Set the calling thread up for one chunk's calls; returns what ``leave_chunk`` restores."""
    previous = (getattr(_local, "info", None), getattr(_local, "key", None))
    info = previous[0]
    worker = getattr(_local, "worker", None)
    if info is None or info.stage != ctx.stage or info.worker != worker:
        info = WorkerInfo(ctx.stage, worker, ctx.concurrency)
    _local.info = info
    _local.key = ctx.key
    return previous


def enter_probe(key: bytes | None = PROBE_KEY) -> tuple[Any, Any]:
    """Give the calling thread's calls item seeds from ``key`` (with ``set_position``)
    without making them stage calls; returns what ``leave_chunk`` restores."""
    previous = (getattr(_local, "info", None), getattr(_local, "key", None))
    _local.key = key
    return previous


def set_position(position: int) -> None:
    """Number the input the calling thread calls next (its ``item_seed()``)."""
    _local.pos = position


def leave_chunk(previous: tuple[Any, Any]) -> None:
    """Restore what ``enter_chunk`` replaced (a shared executor thread serves other work too)."""
    _local.info, _local.key = previous
    _local.pos = None


@dataclass(frozen=True)
class StageStart:
    """The initializer of a pool a stage creates: records the worker, runs the user's one.

    The pool binds each worker's copy to its index (``for_worker``); it runs in
    the worker (its thread, process or subinterpreter) before its first call.
    """

    stage: str
    concurrency: int
    initializer: Callable[..., Any] | None
    initargs: tuple[Any, ...]
    worker: int | None = None

    def for_worker(self, index: int, concurrency: int) -> StageStart:
        """This initializer for worker ``index`` of a pool now ``concurrency`` workers large."""
        return StageStart(self.stage, concurrency, self.initializer, self.initargs, index)

    def __call__(self) -> None:
        _local.worker = self.worker
        info = WorkerInfo(self.stage, self.worker, self.concurrency)
        previous = (getattr(_local, "info", None), getattr(_local, "key", None))
        _local.info, _local.key = info, None
        try:
            if self.initializer is not None:
                self.initializer(*self.initargs)
        finally:
            _local.info, _local.key = previous
