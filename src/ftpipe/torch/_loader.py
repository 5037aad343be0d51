"""``PipelineLoader``: a pipeline that a training loop can use like an iterable DataLoader.

::

    for epoch in range(E):
        loader.set_epoch(epoch)      -> remembered; forwarded to source.set_epoch if it has one
        for batch in loader:         -> iter(): factory(epoch) -> builder -> build(), start
            ...                         (prefetching begins at once, as DataLoader workers do)
                                     <- end of data, break, error, close(): pipeline closed
    len(loader)                      -> from the builder: len(source), then each aggregate
"""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .._engine import PipelineBuilder, PipelineConfig
from .._engine._config import FnKind, StageKind

__all__ = ["PipelineLoader"]


class PipelineLoader:
    """Feed a training loop from a pipeline, rebuilt for every epoch.

    Code written for an iterable ``torch.utils.data.DataLoader`` takes it
    unchanged: ``for batch in loader``, ``len(loader)``, ``loader.set_epoch(n)``.
    Each ``iter(loader)`` builds a fresh pipeline (pipelines run once) and
    starts it immediately, so loading overlaps whatever the loop does before
    its first ``next()``.

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
        with self._lock:
            epoch, peeked, self._peeked = self._epoch, self._peeked, None
        builder = peeked[1] if peeked is not None and peeked[0] == epoch else self._make(epoch)
        set_epoch = getattr(builder.config().source, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        return EpochIterator(builder, self._in_subprocess, self._buffer_size)

    def __len__(self) -> int:
        if self._length is not None:
            return self._length
        return pipeline_length(self._peek().config())

    @property
    def batch_size(self) -> int | None:
        """The size of the last ``aggregate`` stage (None without one), like ``DataLoader.batch_size``."""
        sizes = [s.size for s in self._peek().config().stages if s.kind is StageKind.AGGREGATE]
        return sizes[-1] if sizes else None


class EpochIterator:
    """One epoch of a ``PipelineLoader``: a running pipeline, closed when exhausted.

    Leaving the loop early (``break``) closes it when it is garbage collected;
    call ``close()`` (or use ``with``) to stop and join its threads at once.
    """

    def __init__(self, builder: PipelineBuilder, in_subprocess: bool, buffer_size: int) -> None:
        self._pipeline: Any
        if in_subprocess:
            from ..executors import run_in_subprocess

            self._pipeline = run_in_subprocess(builder, buffer_size=buffer_size)
        else:
            self._pipeline = builder.build()
            self._pipeline.start()
        self._items: Iterator[Any] = iter(self._pipeline)

    def __iter__(self) -> EpochIterator:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._items)
        except BaseException:
            self.close()  # end of data or an error: release threads / processes now
            raise

    def close(self) -> None:
        """Stop the pipeline and release its threads, processes and shared memory."""
        self._pipeline.close()

    def __enter__(self) -> EpochIterator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
