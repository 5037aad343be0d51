"""``run_in_subprocess``: one pipeline in a child process of its own (see ``_subprocess``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from .._priority import Scheduling
from .._validate import positive_int
from ._subprocess import PipelineChild

__all__ = ["SubprocessPipeline", "run_in_subprocess"]


class SubprocessPipeline:
    """Iterator over the results of a pipeline running in a child process.

    Use it as a context manager (or call ``close()``): leaving early stops the
    child, reaps it and removes its shared memory.  Not thread-safe: one consumer.
    """

    def __init__(
        self,
        config: Any,
        *,
        buffer_size: int,
        start_method: str | None,
        state: dict[str, Any] | None = None,
        checkpoints: bool = False,
    ) -> None:
        self._child = PipelineChild(
            buffer_size=buffer_size, start_method=start_method, keep_pools=False
        )
        self._results = self._child.run(config, state, checkpoints)
        self._pid: int = self._results.pid  # type: ignore[assignment]
        self._prefix = self._child.shm_prefix

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._pid

    def __iter__(self) -> SubprocessPipeline:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._results)
        except BaseException:
            # End of data, an error (already read: its arrays outlive the segments'
            # names) or a dead child: release the child now.
            self.close()
            raise

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint after the last item taken: ``run_in_subprocess(builder, state=...)``
        (or ``builder.build(state=...)``) resumes there; as ``Pipeline.state_dict()``.

        Raises:
            ValueError: The pipeline cannot be checkpointed (the message says why).
        """
        return self._results.state_dict()

    def close(self) -> None:
        """Stop the child (if still running), reap it and unlink its shared memory."""
        self._child.close()

    def __enter__(self) -> SubprocessPipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def run_in_subprocess(
    builder: Any,
    *,
    buffer_size: int = 16,
    start_method: str | None = None,
    priority: str | None = None,
    cpus: Iterable[int] | None = None,
    state: dict[str, Any] | None = None,
    checkpoints: bool = False,
) -> SubprocessPipeline:
    """Run a whole pipeline in one dedicated child process and stream its results back.

    The pipeline runs there with its own threads (and executors), so its CPU
    work no longer competes with this process's threads for the GIL or for the
    scheduler's attention; numpy arrays in results come back through shared
    memory without a copy.

    Args:
        builder: A ``PipelineBuilder`` (or its ``config()``): the source must be
            picklable and stage functions importable.
        buffer_size: Results the child may run ahead of the consumer.
        start_method: ``"forkserver"`` (default where available) or ``"spawn"``.
        priority: The child's scheduling priority, all its threads and processes
            included: ``"normal"``, ``"background"`` or ``"idle"``; None: the
            builder's (``PipelineBuilder(priority=...)``).  The child lowers
            itself as it starts, on any POSIX system (per-thread lowering needs
            Linux; a whole process does not); on Linux a ``"background"`` child
            runs ``SCHED_IDLE``, as ``"idle"``: it holds nothing this process
            waits on but the results.
        cpus: Pin the child to these CPU ids; None: the builder's.
        state: A checkpoint to resume from (``state_dict()`` of this object or of a
            ``Pipeline`` built the same way), as ``builder.build(state=...)``.

    Returns:
        An iterator of results that is also a context manager; with
        ``checkpoints``, its ``state_dict()`` is the checkpoint after the last
        result taken.

    Raises:
        TypeError: The source, a stage function or a stage executor cannot move
            to a child process (the message names which), or ``buffer_size`` is
            not an int; ``state`` is not a checkpoint.
        ValueError: ``state`` does not fit the pipeline; ``buffer_size`` is below 1, ``start_method`` or ``priority`` is
            unknown, or ``cpus`` names a CPU this process may not use.
    """
    positive_int(buffer_size, "buffer_size")
    if start_method not in (None, "forkserver", "spawn"):
        raise ValueError(f"start_method must be 'forkserver' or 'spawn', got {start_method!r}")
    config = builder.config() if hasattr(builder, "config") else builder
    if priority is not None or cpus is not None:
        own = config.scheduling
        scheduling = Scheduling.of(
            own.priority if priority is None else priority,
            own.cpus if cpus is None else cpus,
            "run_in_subprocess",
        )
        config = dataclasses.replace(config, scheduling=scheduling)
    return SubprocessPipeline(
        config,
        buffer_size=buffer_size,
        start_method=start_method,
        state=state,
        checkpoints=checkpoints,
    )
