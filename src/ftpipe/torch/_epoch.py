"""One epoch of a ``PipelineLoader``: its running pipeline, and where its consumer is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .._engine import PipelineBuilder

__all__ = ["EpochIterator", "start_epoch"]


class EpochIterator:
    """One epoch of a ``PipelineLoader``: a running pipeline, closed when exhausted.

    Leaving the loop early (``break``) closes it when it is garbage collected;
    call ``close()`` (or use ``with``) to stop and join its threads at once.
    Persistent workers stay with the loader.
    """

    def __init__(self, pipeline: Any, epoch: int, keep: object = None) -> None:
        self._pipeline = pipeline
        self.epoch = epoch
        # Set by the consumer's own thread when the data ended: the epoch is over.
        self.finished = False
        # The loader's persistent workers: they must outlive a loader dropped mid-epoch
        # (`next(iter(PipelineLoader(...)))`) until this epoch is done with them.
        self._keep = keep
        self._items: Iterator[Any] = iter(pipeline)

    def __iter__(self) -> EpochIterator:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._items)
        except StopIteration:
            self.finished = True
            self.close()
            raise
        except BaseException:
            self.close()  # end of data or an error: release threads / processes now
            raise

    def state_dict(self) -> dict[str, Any]:
        """The pipeline's checkpoint (``Pipeline.state_dict()``), refusals included."""
        state_dict = getattr(self._pipeline, "state_dict", None)
        if state_dict is None:
            raise NotImplementedError(
                f"PipelineLoader.state_dict(): a {type(self._pipeline).__name__} epoch "
                "cannot be checkpointed"
            )
        state: dict[str, Any] = state_dict()
        return state

    def close(self) -> None:
        """Stop the pipeline and release its threads, processes and shared memory."""
        self._pipeline.close()

    def __enter__(self) -> EpochIterator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start_epoch(
    builder: PipelineBuilder, in_subprocess: bool, buffer_size: int, state: Any = None
) -> Any:
    """One epoch's pipeline with workers of its own, started (``persistent_workers=False``)."""
    if in_subprocess:
        from ..executors import run_in_subprocess

        return run_in_subprocess(builder, buffer_size=buffer_size, state=state, checkpoints=True)
    pipeline = builder.build(state=state)
    pipeline.start()
    return pipeline
