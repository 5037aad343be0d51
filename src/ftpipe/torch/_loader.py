"""``PipelineLoader``: a pipeline that a training loop can use like an iterable DataLoader.

::

    for epoch in range(E):
        loader.set_epoch(epoch)      -> remembered; forwarded to source.set_epoch if it has one
        for batch in loader:         -> iter(): factory(epoch) -> builder -> build(), start
            ...                         (prefetching begins at once, as DataLoader workers do)
                                     <- end of data, break, error, close(): pipeline closed
    len(loader)                      -> from the builder: len(source), then each aggregate
    loader.close()                   -> persistent workers stopped (also on collection, at exit)
    loader.state_dict()              -> {"epoch", "pipeline": that epoch's Pipeline.state_dict() or None}
    new.load_state_dict(state)       -> the next iter() of that epoch: build(state=...)

Persistent workers (the default)::

    in process:    PersistentPools: "process" / "interpreter" stages lease one pool per
                   stage, kept from epoch to epoch (ftpipe.executors._persistent)
    in_subprocess: PipelineChild: one child runs every epoch's pipeline, keeping its
                   stages' pools the same way (ftpipe.executors._subprocess)
"""

from __future__ import annotations

import inspect
import math
import threading
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .._engine import FnKind, Pipeline, PipelineBuilder, PipelineConfig, StageKind
from ..executors._persistent import PersistentPools
from ..executors._subprocess import PipelineChild
from ._epoch import EpochIterator, start_epoch

__all__ = ["PipelineLoader"]

_STATE_VERSION = 1


class PipelineLoader:
    """Feed a training loop from a pipeline, rebuilt for every epoch.

    Code written for an iterable ``torch.utils.data.DataLoader`` takes it
    unchanged: ``for batch in loader``, ``len(loader)``, ``loader.set_epoch(n)``.
    Each ``iter(loader)`` builds a fresh pipeline (pipelines run once) and
    starts it immediately, so loading overlaps whatever the loop does before
    its first ``next()``.  Its worker processes and subinterpreters, and the
    child of ``in_subprocess``, start once and serve every epoch
    (``persistent_workers``); ``close()`` stops them.

    Args:
        factory: Either a ``PipelineBuilder`` whose source can be iterated more
            than once (a list, a range, a dataset object), rebuilt each epoch;
            or a callable returning a ``PipelineBuilder``, called with the epoch
            number if it takes a positional argument (e.g. to seed a shuffle),
            else with none.  It runs once per epoch (``len()`` before ``iter()``
            reuses the same builder), so it may return a builder over a generator.
        length: What ``len()`` returns, when it cannot be worked out from the
            builder (a source without ``len``, a generator stage, ``on_error="skip"``).
        in_subprocess: Run each epoch's pipeline in a dedicated child process
            (``ftpipe.run_in_subprocess``), so its threads do not compete with
            the training loop's for the GIL or for cores.  The source must be
            picklable and stage functions importable; put ``to_device`` after
            this loader (in the loop), never in the child.
        buffer_size: With ``in_subprocess``, batches the child may run ahead.
        persistent_workers: Keep workers from one epoch to the next, like the
            DataLoader option: each ``"process"`` / ``"interpreter"`` stage gets
            one pool (``max_workers`` = its concurrency, named after it) that
            every epoch's pipeline uses, and ``in_subprocess`` one child that
            runs every epoch.  A stage whose kind or concurrency changed, or
            whose pool lost a worker, gets a new pool at the next epoch; so does
            one still busy 2 s after an epoch was left early.  A new
            ``iter()`` ends the previous epoch that used them (as DataLoader's
            does).  Thread stages and executors you pass are not affected.
            False: every epoch starts and stops its own.

    Raises:
        TypeError: ``factory`` is neither a builder nor a callable, or a
            builder's source is a one-shot iterator (a generator), which a
            second epoch would find empty.
    """

    def __init__(
        self,
        factory: PipelineBuilder | Callable[..., PipelineBuilder],
        *,
        length: int | None = None,
        in_subprocess: bool = False,
        buffer_size: int = 16,
        persistent_workers: bool = True,
    ) -> None:
        if isinstance(factory, PipelineBuilder):
            source = factory.config().source
            if isinstance(source, Iterator | AsyncIterator):
                raise TypeError(
                    f"the builder's source ({type(source).__name__}) is a one-shot iterator: "
                    "the second epoch would be empty. Pass a re-iterable source (list, range, "
                    "dataset object) or a function that returns a new builder per epoch"
                )
            self._factory: Callable[[int], PipelineBuilder] = lambda _epoch: factory
        elif callable(factory):
            takes_epoch = _takes_positional(factory)
            self._factory = (lambda epoch: factory(epoch)) if takes_epoch else (lambda _: factory())
        else:
            raise TypeError(
                "PipelineLoader needs a PipelineBuilder or a function returning one, "
                f"got {type(factory).__name__}"
            )
        if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
            raise TypeError(f"length must be None or an int >= 0, got {length!r}")
        if length is not None and length < 0:
            raise ValueError(f"length must be None or an int >= 0, got {length!r}")
        self._length = length
        self._in_subprocess = bool(in_subprocess)
        self._buffer_size = buffer_size
        # Guards _epoch and _peeked: set_epoch may come from another thread.
        self._lock = threading.Lock()
        self._epoch = 0
        # The builder len() / batch_size looked at, handed to the next iter() of the same
        # epoch, so the factory runs once per epoch (its source may be a one-shot generator).
        self._peeked: tuple[int, PipelineBuilder] | None = None
        self._persistent = bool(persistent_workers)
        # What persists between epochs, made on first use; guarded by _lock (close()
        # may come from another thread).  Each has its own finalizer: collecting the
        # loader, or interpreter exit, stops its workers.
        self._pools: PersistentPools | None = None
        self._child: PipelineChild | None = None
        self._last: weakref.ref[EpochIterator] | None = None  # the last epoch that used them
        # The latest epoch (for state_dict()) and a checkpoint that the next iter() of its
        # epoch resumes (from load_state_dict()); guarded by _lock.
        self._current: weakref.ref[EpochIterator] | None = None
        self._resume: tuple[int, dict[str, Any]] | None = None

    @property
    def epoch(self) -> int:
        """The epoch the next ``iter()`` builds for (set with ``set_epoch``)."""
        with self._lock:
            return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch passed to the factory (and to ``source.set_epoch``) by the next ``iter()``.

        Like ``DistributedSampler.set_epoch``: without a call, every epoch sees
        the same epoch number, hence the same order if the factory shuffles by it.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise TypeError(f"epoch must be an int, got {type(epoch).__name__} {epoch!r}")
        with self._lock:
            self._epoch = epoch

    def _make(self, epoch: int) -> PipelineBuilder:
        builder = self._factory(epoch)
        if not isinstance(builder, PipelineBuilder):
            raise TypeError(
                f"the PipelineLoader factory returned {type(builder).__name__}, not a PipelineBuilder"
            )
        return builder

    def _peek(self) -> PipelineBuilder:
        with self._lock:
            epoch, peeked = self._epoch, self._peeked
        if peeked is not None and peeked[0] == epoch:
            return peeked[1]
        builder = self._make(epoch)
        with self._lock:
            self._peeked = (epoch, builder)
        return builder

    def __iter__(self) -> EpochIterator:
        epoch_iter = self._iter()
        with self._lock:
            self._current = weakref.ref(epoch_iter)
        return epoch_iter

    def _iter(self) -> EpochIterator:
        with self._lock:
            epoch, peeked, self._peeked = self._epoch, self._peeked, None
            resume, self._resume = self._resume, None
        state = resume[1] if resume is not None and resume[0] == epoch else None
        if resume is not None and state is None:  # never silently: say it is dropped
            why = f"the loaded checkpoint is for epoch {resume[0]}, this iter() is {epoch}"
            warnings.warn(f"PipelineLoader: {why}; it starts afresh", RuntimeWarning, 3)
        builder = peeked[1] if peeked is not None and peeked[0] == epoch else self._make(epoch)
        builder.set_epoch(epoch)  # item_seed() differs from epoch to epoch
        set_epoch = getattr(builder.config().source, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        if not self._persistent:
            pipeline = start_epoch(builder, self._in_subprocess, self._buffer_size, state)
            return EpochIterator(pipeline, epoch)
        self._end_last_epoch()  # its workers serve this one: its pipeline must be gone
        with self._lock:
            if self._in_subprocess and self._child is None:
                self._child = PipelineChild(buffer_size=self._buffer_size)
            if not self._in_subprocess and self._pools is None:
                self._pools = PersistentPools()
            child, pools = self._child, self._pools
        if child is not None:
            # Batches carry their checkpoints: state_dict() works mid-epoch (per batch,
            # the child's ~10 µs are nothing beside a batch).
            epoch_iter = EpochIterator(child.run(builder, state, True), epoch, keep=child)
        else:
            assert pools is not None
            pipeline = builder.build(state=state)
            if isinstance(pipeline, Pipeline):  # not diagnostic mode's profiler
                leased = pools.attach(pipeline.config)
                if leased is pipeline.config:  # no stage with a pool: nothing persists
                    pipeline.start()
                    return EpochIterator(pipeline, epoch)
                pipeline = Pipeline(leased)
            pipeline.start()
            epoch_iter = EpochIterator(pipeline, epoch, keep=pools)
        with self._lock:
            self._last = weakref.ref(epoch_iter)
        return epoch_iter

    def state_dict(self) -> dict[str, Any]:
        """Return a checkpoint: ``load_state_dict`` on a new loader resumes from here.

        As ``torchdata``'s ``StatefulDataLoader``: call it between batches (the
        epoch's ``Pipeline.state_dict()`` is taken) or between epochs (the next
        ``iter()`` starts the loader's epoch from its beginning).  Small, plain data.

        Raises:
            ValueError: The epoch's pipeline cannot be checkpointed (the message says why).
        """
        with self._lock:
            epoch, current = self._epoch, self._current
        epoch_iter = current() if current is not None else None
        pipeline = None
        if epoch_iter is not None and epoch_iter.epoch == epoch and not epoch_iter.finished:
            pipeline = epoch_iter.state_dict()
        return {"version": _STATE_VERSION, "epoch": epoch, "pipeline": pipeline}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()``: the next ``iter()`` continues that epoch where it was.

        The loader's epoch becomes the checkpoint's (item seeds repeat); a
        ``set_epoch`` to another epoch before ``iter()`` starts that one afresh.
        Later epochs run as usual.

        Raises:
            TypeError: ``state`` is not from ``PipelineLoader.state_dict()``.
            NotImplementedError: With ``in_subprocess``.
        """
        if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
            raise TypeError(
                "load_state_dict: expected a dict from PipelineLoader.state_dict(), "
                f"got {type(state).__name__} {state!r:.80}"
            )
        epoch, pipeline = state["epoch"], state["pipeline"]
        self.set_epoch(epoch)
        with self._lock:
            self._resume = None if pipeline is None else (epoch, pipeline)

    def _end_last_epoch(self) -> None:
        with self._lock:
            last, self._last = self._last, None
        epoch_iter = last() if last is not None else None
        if epoch_iter is not None:
            epoch_iter.close()

    def close(self) -> None:
        """Stop the running epoch and every persistent worker; leaves no process behind.

        Idempotent.  A later ``iter()`` starts new workers.  Collecting the
        loader, and interpreter exit, do the same.
        """
        self._end_last_epoch()
        with self._lock:
            pools, child, self._pools, self._child = self._pools, self._child, None, None
        if pools is not None:
            pools.close()
        if child is not None:
            child.close()

    def __enter__(self) -> PipelineLoader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        if self._length is not None:
            return self._length
        return pipeline_length(self._peek().config())

    @property
    def batch_size(self) -> int | None:
        """The size of the last ``aggregate`` stage (None without one), like ``DataLoader.batch_size``."""
        sizes = [s.size for s in self._peek().config().stages if s.kind is StageKind.AGGREGATE]
        return sizes[-1] if sizes else None


def pipeline_length(config: PipelineConfig) -> int:
    """How many items a pipeline yields, worked out from ``len(source)`` and its stages.

    Raises:
        TypeError: The count cannot be known in advance; the message says which
            part of the pipeline hides it and how to give it (``length=``).
    """
    try:
        n = len(config.source)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"len() is unknown: the source ({type(config.source).__name__}) has no len(); "
            "pass length= to PipelineLoader"
        ) from None
    for stage in config.stages:
        if stage.kind is StageKind.AGGREGATE:
            n = n // stage.size if stage.drop_last else math.ceil(n / stage.size)
        elif stage.kind is StageKind.DISAGGREGATE:
            raise TypeError(
                f"len() is unknown: stage {stage.name!r} flattens items; pass length= to PipelineLoader"
            )
        elif stage.fn_kind in (FnKind.GENERATOR, FnKind.ASYNC_GENERATOR):
            raise TypeError(
                f"len() is unknown: stage {stage.name!r} is a generator (any number of outputs "
                "per input); pass length= to PipelineLoader"
            )
        elif stage.on_error == "skip":
            raise TypeError(
                f"len() is unknown: stage {stage.name!r} may skip failing items; "
                "pass length= to PipelineLoader"
            )
    return n


def _takes_positional(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: call without arguments
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    )
