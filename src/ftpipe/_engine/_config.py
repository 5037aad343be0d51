"""Frozen, validated descriptions of a pipeline: what the builder hands to the engine.

::

    PipelineBuilder ──for_pipe(...)──► StageConfig ─┐
      (classify_fn: FnKind of fn)                   ├─► PipelineConfig ──► Pipeline runs it
                                                    │                 ├─► the diagnostic profiler
    source, sink buffer size ───────────────────────┘                 └─► run_in_subprocess

``PipelineBuilder`` collects these; ``Pipeline`` runs them; the diagnostic
profiler and ``run_in_subprocess`` read them.  Validation lives here so every
error names the stage and the bad value, at build time.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from .._priority import NORMAL, Scheduling
from .._validate import positive_int
from ._executor_kinds import executor_kind, executor_kind_names
from ._setup import check_initializer

__all__ = ["FnKind", "PipelineConfig", "StageConfig", "StageKind", "classify_fn"]

DEFAULT_BUFFER_SIZE = 64
# The most workers the tuner gives a stage that waits (I/O, sleeps, a device) when
# the user set no max_concurrency; a stage that computes stays within the cores.
AUTO_MAX_CONCURRENCY = 64


class StageKind(str, Enum):
    """What a stage does with its inputs."""

    PIPE = "pipe"
    AGGREGATE = "aggregate"
    DISAGGREGATE = "disaggregate"


class FnKind(str, Enum):
    """How a stage function produces its outputs."""

    FUNCTION = "function"  # one input -> one output
    GENERATOR = "generator"  # one input -> zero or more outputs
    ASYNC = "async"  # coroutine function: one input -> one output
    ASYNC_GENERATOR = "async-generator"  # async generator: zero or more outputs


def classify_fn(fn: Callable[..., Any]) -> FnKind:
    """Return how ``fn`` produces outputs (looking through ``functools.partial``)."""
    target = fn
    while hasattr(target, "func"):  # functools.partial and friends
        target = target.func
    if inspect.isasyncgenfunction(target):
        return FnKind.ASYNC_GENERATOR
    if inspect.iscoroutinefunction(target) or asyncio.iscoroutinefunction(target):
        return FnKind.ASYNC
    if inspect.isgeneratorfunction(target):
        return FnKind.GENERATOR
    if not inspect.isfunction(target) and not inspect.isbuiltin(target):
        call = type(target).__call__ if callable(target) else None
        if call is not None and inspect.isasyncgenfunction(call):
            return FnKind.ASYNC_GENERATOR
        if call is not None and inspect.iscoroutinefunction(call):
            return FnKind.ASYNC
        if call is not None and inspect.isgeneratorfunction(call):
            return FnKind.GENERATOR
    return FnKind.FUNCTION


def _stage_label(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


@dataclass(frozen=True)
class StageConfig:
    """One stage of a pipeline, validated.

    Attributes:
        name: Unique name within the pipeline (used in stats, errors and reports).
        kind: ``pipe``, ``aggregate`` or ``disaggregate``.
        fn: The stage function (None for aggregate; the engine's ``flatten`` for
            disaggregate, a generator function).
        fn_kind: How ``fn`` produces outputs.
        concurrency: Calls in flight at once (worker threads, or coroutines for async).
        executor: None for the engine's own threads, a registered kind name, or a
            user-owned ``concurrent.futures.Executor`` (never shut down by ftpipe).
        ordered: Emit outputs in input order (True) or completion order (False).
        on_error: ``"raise"`` stops the pipeline; ``"skip"`` drops the item.
        max_failures: With ``"skip"``, raise once more than this many items failed.
        retries: Extra attempts per failing call before the error policy applies.
        buffer_size: Capacity of this stage's output buffer, in items.
        size: Items per list for ``aggregate``.
        drop_last: ``aggregate`` drops a final short list.
        auto_concurrency: ``concurrency="auto"``: the pipeline's tuner sizes the
            stage while it runs, starting at ``concurrency``.
        max_concurrency: The most the tuner gives the stage (None: its default).
        auto_executor: ``executor="auto"``: the tuner may move the stage between
            threads and the interpreter or process executor (it starts on threads).
        initializer: Called once in each worker before its first call (with ``initargs``).
        initargs: Arguments for ``initializer``.
        seed_key: The key of this stage's item seeds (from the pipeline's seed,
            epoch and this stage's name), or None when the pipeline has no seed.
        position_offset: Added to the stage's input numbers for ``item_seed()``:
            the inputs a checkpointed run had used up (``build(state=...)``).
        resume_drop: Outputs of the stage's first inputs that the checkpointed run
            had delivered already: made again and dropped (``build(state=...)``).
        resume_skip: Inputs after the first that the checkpointed run had finished
            (an ``ordered=False`` stage; numbered from ``position_offset``): skipped.
        note_offset: Added to input numbers in error notes: the inputs the same
            pipeline handled in the consumer's thread before this run (``_inline``).
    """

    name: str
    kind: StageKind
    fn: Callable[..., Any] | None
    fn_kind: FnKind
    concurrency: int
    executor: str | Executor | None
    ordered: bool
    on_error: Literal["raise", "skip"]
    max_failures: int | None
    retries: int
    buffer_size: int
    size: int = 0
    drop_last: bool = False
    auto_concurrency: bool = False
    max_concurrency: int | None = None
    auto_executor: bool = False
    initializer: Callable[..., Any] | None = None
    initargs: tuple[Any, ...] = ()
    seed_key: bytes | None = None
    position_offset: int = 0
    resume_drop: int = 0
    resume_skip: tuple[int, ...] = ()
    note_offset: int = 0

    @property
    def executor_name(self) -> str:
        """``"thread"``, the registered kind name, or the executor's class name.

        An executor standing in for a kind (a persistent pool kept across pipelines)
        names it in its ``executor_kind_name`` attribute.
        """
        if self.executor is None:
            return "thread"
        if isinstance(self.executor, str):
            return self.executor
        return getattr(self.executor, "executor_kind_name", None) or type(self.executor).__name__

    @classmethod
    def for_pipe(
        cls,
        fn: Callable[..., Any],
        *,
        index: int,
        concurrency: int | str,
        executor: str | Executor | None,
        ordered: bool,
        name: str | None,
        on_error: str,
        max_failures: int | None,
        retries: int,
        buffer_size: int | None,
        max_concurrency: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Any = (),
    ) -> StageConfig:
        """Validate the arguments of ``PipelineBuilder.pipe`` and freeze them."""
        label = name if name is not None else f"{index}:{_stage_label(fn) if callable(fn) else '?'}"
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"stage {index}: name must be a non-empty str, got {name!r}")
        if not callable(fn):
            raise TypeError(f"stage {label!r}: fn must be callable, got {type(fn).__name__} {fn!r}")
        auto = concurrency == "auto"
        if auto:
            concurrency = 1  # the tuner starts small and grows what limits throughput
        elif isinstance(concurrency, str):
            raise TypeError(
                f"stage {label!r}: concurrency must be a positive int or 'auto', "
                f"got str {concurrency!r}"
            )
        positive_int(concurrency, f"stage {label!r}: concurrency")
        assert isinstance(concurrency, int)
        if max_concurrency is not None:
            positive_int(max_concurrency, f"stage {label!r}: max_concurrency")
            if not auto:
                raise ValueError(
                    f"stage {label!r}: max_concurrency only applies with concurrency='auto'"
                )
        if not isinstance(ordered, bool):
            raise TypeError(f"stage {label!r}: ordered must be a bool, got {ordered!r}")
        if not isinstance(on_error, str) or on_error not in ("raise", "skip"):
            raise ValueError(
                f"stage {label!r}: on_error must be 'raise' or 'skip', got {on_error!r}"
            )
        if max_failures is not None:
            if isinstance(max_failures, bool) or not isinstance(max_failures, int):
                raise TypeError(
                    f"stage {label!r}: max_failures must be None or an int >= 0, got {max_failures!r}"
                )
            if max_failures < 0:
                raise ValueError(
                    f"stage {label!r}: max_failures must be None or an int >= 0, got {max_failures!r}"
                )
            if on_error != "skip":
                raise ValueError(f"stage {label!r}: max_failures only applies with on_error='skip'")
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise TypeError(f"stage {label!r}: retries must be an int >= 0, got {retries!r}")
        if retries < 0:
            raise ValueError(f"stage {label!r}: retries must be an int >= 0, got {retries!r}")
        # A tuned stage may grow: its buffer holds a batch for every worker it may get.
        most = (max_concurrency or AUTO_MAX_CONCURRENCY) if auto else concurrency
        buffer = _buffer_size(buffer_size, label, default=max(DEFAULT_BUFFER_SIZE, 2 * most))
        fn_kind = classify_fn(fn)
        auto_executor = executor == "auto"
        if auto_executor:
            executor = None  # starts on threads; the tuner measures before it moves it
        if executor is not None and not isinstance(executor, Executor):
            if not isinstance(executor, str):
                raise TypeError(
                    f"stage {label!r}: executor must be None, 'auto', one of {list(executor_kind_names())} "
                    f"or a concurrent.futures.Executor, got {type(executor).__name__} {executor!r}"
                )
            if executor == "thread":
                executor = None
            else:
                kind = executor_kind(executor)
                if kind is None:
                    raise ValueError(
                        f"stage {label!r}: unknown executor {executor!r}; expected 'auto', "
                        f"one of {list(executor_kind_names())} or a concurrent.futures.Executor"
                    )
                kind.check(fn, label)
        if auto and isinstance(executor, Executor):
            raise ValueError(
                f"stage {label!r}: concurrency='auto' needs an executor the pipeline sizes: "
                f"pass a kind name (executor='process') instead of a {type(executor).__name__}"
            )
        initargs = check_initializer(initializer, initargs, executor, label)
        return cls(
            name=label,
            kind=StageKind.PIPE,
            fn=fn,
            fn_kind=fn_kind,
            concurrency=concurrency,
            executor=executor,
            ordered=ordered,
            on_error=on_error,  # type: ignore[arg-type]
            max_failures=max_failures,
            retries=retries,
            buffer_size=buffer,
            auto_concurrency=auto,
            max_concurrency=max_concurrency,
            auto_executor=auto_executor,
            initializer=initializer,
            initargs=initargs,
        )


def _buffer_size(value: int | None, label: str, *, default: int) -> int:
    if value is None:
        return default
    return positive_int(value, f"stage {label!r}: buffer_size")


@dataclass(frozen=True)
class PipelineConfig:
    """A whole pipeline: source, stages and the sink's buffer, validated.

    Attributes:
        source: The iterable (or async iterable) of input items.
        stages: The stages, in order.
        sink_buffer_size: Items the sink buffers ahead of the consumer.
        scheduling: Priority and CPU pinning of every thread and process the
            pipeline starts (``PipelineBuilder(priority=..., cpus=...)``).
        seed: The pipeline's seed (``item_seed()``), or None.
        epoch: The epoch the item seeds are derived for.
        start: Outputs a checkpointed run had delivered before this one resumed it.
        source_offset: The number of the source's first item in this run (a
            checkpointed run had used up the ones before).
        source_state: ``(state, skip)`` for a source with ``load_state_dict()``:
            load ``state``, then skip ``skip`` items (``build(state=...)``).
        inline: Stages that allow it run in the consumer's thread until their calls
            prove slow (``PipelineBuilder(inline=...)``, ``_inline``).
    """

    source: Iterable[Any] | AsyncIterable[Any]
    stages: tuple[StageConfig, ...]
    sink_buffer_size: int
    scheduling: Scheduling = NORMAL
    seed: int | None = None
    epoch: int = 0
    start: int = 0
    source_offset: int = 0
    source_state: tuple[Any, int] | None = None
    inline: bool = True
