"""``PipelineBuilder``: collect and validate stages, then build a ``Pipeline``.

::

    add_source(iterable)
    pipe(fn, ...)             each call validated at once (errors name the stage),
    aggregate(n)         ──►  frozen into a StageConfig; disaggregate() is a
    disaggregate()            generator stage over _calls.flatten
    add_sink(buffer_size)
                │
                ▼
    apply_tuning(report)      a diagnosis report's advice (_apply_report; FTPIPE_TUNING)
    config() ──► PipelineConfig ──► build(state=) ──► Pipeline   (state: _state)
                                          └──► FTPIPE_DIAGNOSTIC_MODE=1: the hook's (_hooks)
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from .._priority import Scheduling
from .._validate import a_bool, an_int, non_negative_int, positive_int
from ._apply_report import TUNING_ENV, apply_report
from ._calls import flatten
from ._config import DEFAULT_BUFFER_SIZE, FnKind, PipelineConfig, StageConfig, StageKind
from ._context import stage_key
from ._hooks import diagnostic_hook
from ._pipeline import Pipeline
from ._state import resume

if TYPE_CHECKING:
    from typing import Self

__all__ = ["PipelineBuilder"]


class PipelineBuilder:
    """Describe a pipeline stage by stage, then ``build()`` it.

    Every method validates its arguments at once and raises ``TypeError`` or
    ``ValueError`` naming the stage and the bad value, so mistakes surface where
    they are written, not when the pipeline runs.

    Args:
        priority: Scheduling priority of every thread and process the pipeline
            starts (source and stage threads, executors it creates from a kind
            name, their worker processes and the threads inside them), never the
            consumer's: ``"normal"`` (default: as the code that starts it),
            ``"background"`` (niceness 19 per thread on Linux, so the consumer, a
            training loop, wins every contested core; ``SCHED_IDLE`` in worker
            processes, which hold nothing the consumer waits on) or ``"idle"``
            (``SCHED_IDLE``: runs only on otherwise idle cores; may starve).
            Per thread on Linux only; elsewhere a no-op that warns once, while
            ``run_in_subprocess`` still lowers its whole child (see the training
            guide).  An executor instance passed to ``pipe`` is the caller's:
            give it its own ``priority=`` (worker threads it starts from the
            pipeline's threads inherit their priority, as Linux threads do).
        cpus: Pin the same threads and processes to these CPU ids (a subset of
            ``os.sched_getaffinity(0)``); None: no pinning.
        inline: True (default): stages that allow it run in the consumer's thread until
            their calls prove slow (docs/free-threading.md); False: threads from the start.

    Raises:
        ValueError: ``priority`` is not ``"normal"``, ``"background"`` or ``"idle"``,
            or ``cpus`` is empty or names a CPU this process may not use.
        TypeError: ``cpus`` is not a collection of ints, or ``inline`` not a bool.

    Example:
        >>> import ftpipe
        >>> pipeline = (
        ...     ftpipe.PipelineBuilder()
        ...     .add_source(range(5))
        ...     .pipe(lambda x: x * 10, concurrency=2)
        ...     .add_sink(buffer_size=4)
        ...     .build()
        ... )
        >>> with pipeline:
        ...     list(pipeline)
        [0, 10, 20, 30, 40]
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        epoch: int = 0,
        priority: str = "normal",
        cpus: Iterable[int] | None = None,
        inline: bool = True,
    ) -> None:
        """Start an empty pipeline.

        Args:
            seed: Makes ``ftpipe.item_seed()`` available in stage calls: each item's
                seed derives from it, the epoch, the stage's name and the item's
                position, so random augmentation repeats exactly at any concurrency
                and on any executor.  An int >= 0; None: no seeds.
            epoch: Which epoch the item seeds are for (an int); a new epoch gives
                every item new seeds.  ``set_epoch`` changes it.
            priority, cpus, inline: See the class docstring.

        Raises:
            TypeError: ``seed``, ``epoch`` not ints, ``cpus`` not ints, ``inline`` not a bool.
            ValueError: ``seed`` is negative, ``priority`` unknown, or ``cpus``
                names a CPU this process may not use.
        """
        self._scheduling = Scheduling.of(priority, cpus, "PipelineBuilder")
        self._seed = None if seed is None else non_negative_int(seed, "PipelineBuilder: seed")
        self._epoch = an_int(epoch, "PipelineBuilder: epoch")
        self._inline = a_bool(inline, "PipelineBuilder: inline")
        self._source: Iterable[Any] | AsyncIterable[Any] | None = None
        self._stages: list[StageConfig] = []
        self._sink_buffer_size: int | None = None
        # Stages whose buffer_size was given (not defaulted): the last one's is the sink's.
        self._sized: set[str] = set()

    def set_epoch(self, epoch: int) -> Self:
        """Set the epoch item seeds derive from (``ftpipe.torch.PipelineLoader`` sets it).

        Raises:
            TypeError: ``epoch`` is not an int.
        """
        self._epoch = an_int(epoch, "PipelineBuilder: epoch")
        return self

    def add_source(self, source: Iterable[Any] | AsyncIterable[Any]) -> Self:
        """Set the pipeline's input: any iterable or async iterable."""
        if self._source is not None:
            raise ValueError("the pipeline already has a source; add_source() may be called once")
        if not isinstance(source, Iterable | AsyncIterable) or isinstance(source, str | bytes):
            raise TypeError(
                f"source must be an iterable (not str/bytes), got {type(source).__name__} {source!r:.80}"
            )
        self._source = source
        return self

    def pipe(
        self,
        fn: Callable[..., Any],
        *,
        concurrency: int | Literal["auto"] = 1,
        executor: str | Executor | None = None,
        ordered: bool = True,
        name: str | None = None,
        on_error: str = "raise",
        max_failures: int | None = None,
        retries: int = 0,
        buffer_size: int | None = None,
        max_concurrency: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> Self:
        """Add a stage that calls ``fn`` on every item.

        Args:
            fn: A function (one output per input), a generator function (zero or
                more outputs per input, in order) or an async function / async
                generator function (run on an event loop owned by the stage).
            concurrency: Calls in flight at once: worker threads, executor workers,
                or coroutines for async functions.  ``"auto"``: the pipeline's tuner
                starts at 1 and grows the stage while throughput improves (see
                ``Pipeline.stats()``'s ``tuning`` notes).
            executor: ``None`` or ``"thread"`` for the engine's threads, a registered
                kind (``"process"``, ``"interpreter"``) or any
                ``concurrent.futures.Executor`` (which the pipeline never shuts down).
                ``"auto"``: threads, unless the tuner measures that the stage holds
                the GIL (or contends on 3.13t) and another executor is faster.
            ordered: Keep input order (True) or yield in completion order (False).
            name: The stage's name in stats, errors and reports (default ``"<index>:<fn>"``).
            on_error: ``"raise"`` stops the pipeline and re-raises in the consumer;
                ``"skip"`` drops the failing item and counts it.
            max_failures: With ``"skip"``, raise once more than this many items failed.
            retries: Extra attempts for a failing call before ``on_error`` applies.
            buffer_size: Capacity of the stage's output buffer (default 64, or
                twice the concurrency when larger).  The last stage's output buffer
                is the sink: its ``buffer_size`` sets the sink's, and giving
                ``add_sink`` a different one is an error.
            max_concurrency: With ``concurrency="auto"``: the most the tuner gives
                the stage (default: the usable cores for a stage that computes,
                64 for one that waits).
            initializer: Called as ``initializer(*initargs)`` once in each worker
                before its first call: in each worker thread of a thread stage, in
                the loop thread of an async stage, in each worker process or
                subinterpreter of ``"process"`` / ``"interpreter"`` stages (there
                it must pickle / import by name, as ``fn`` must).  Refused with an
                executor instance (give that executor the initializer).  What it
                raises stops the pipeline.  ``ftpipe.worker_info()`` works in it.
            initargs: Arguments for ``initializer``.

        Raises:
            TypeError, ValueError: An argument is invalid; the message names the stage.
        """
        stage = StageConfig.for_pipe(
            fn,
            index=len(self._stages),
            concurrency=concurrency,
            executor=executor,
            ordered=ordered,
            name=name,
            on_error=on_error,
            max_failures=max_failures,
            retries=retries,
            buffer_size=buffer_size,
            max_concurrency=max_concurrency,
            initializer=initializer,
            initargs=initargs,
        )
        self._add(stage)
        if buffer_size is not None:
            self._sized.add(stage.name)
        return self

    def aggregate(self, n: int, *, drop_last: bool = False) -> Self:
        """Group items into lists of ``n``; the last list may be shorter unless ``drop_last``."""
        label = f"{len(self._stages)}:aggregate({n!r})"
        positive_int(n, f"stage {label!r}: aggregate size")
        self._add(self._builtin(StageKind.AGGREGATE, label, size=n, drop_last=bool(drop_last)))
        return self

    def disaggregate(self) -> Self:
        """Flatten each incoming iterable (e.g. an aggregated list) into its items."""
        label = f"{len(self._stages)}:disaggregate"
        # A generator stage over the engine's flatten: it runs as any generator does.
        self._add(
            self._builtin(StageKind.DISAGGREGATE, label, fn=flatten, fn_kind=FnKind.GENERATOR)
        )
        return self

    def add_sink(self, *, buffer_size: int | None = None) -> Self:
        """Set how many output items are buffered ahead of the consumer.

        Args:
            buffer_size: Items buffered (default: the last stage's ``buffer_size``
                when one was given, else 64).  The sink *is* the last stage's output
                buffer, so when both are given they must agree (checked by ``config()``
                and ``build()``).
        """
        if buffer_size is None:
            self._sink_buffer_size = None
            return self
        positive_int(buffer_size, "sink: buffer_size")
        self._sink_buffer_size = buffer_size
        return self

    def config(self) -> PipelineConfig:
        """Return the validated, frozen description of the pipeline built so far.

        Raises:
            ValueError: There is no source, or the last stage's ``buffer_size`` and
                ``add_sink(buffer_size=...)`` disagree (they size the same buffer).
        """
        if self._source is None:
            raise ValueError("the pipeline has no source; call add_source(iterable) first")
        sink = self._sink_buffer_size
        last = self._stages[-1] if self._stages else None
        if last is not None and last.name in self._sized:
            if sink is not None and sink != last.buffer_size:
                raise ValueError(
                    f"stage {last.name!r}: buffer_size={last.buffer_size} and "
                    f"add_sink(buffer_size={sink}) size the same buffer (the last stage's "
                    "output is what the consumer reads); give the size in one place"
                )
            sink = last.buffer_size
        sink = DEFAULT_BUFFER_SIZE if sink is None else sink
        stages = tuple(self._stages)
        if self._seed is not None:
            seed, epoch = self._seed, self._epoch
            stages = tuple(replace(s, seed_key=stage_key(seed, epoch, s.name)) for s in stages)
        how = (self._scheduling, self._seed, self._epoch)
        return PipelineConfig(self._source, stages, sink, *how, inline=self._inline)

    def apply_tuning(self, report: Any) -> Self:
        """Set each stage's concurrency and executor to a diagnosis report's advice.

        Stages are matched by name; the advice taken is the one for the interpreter
        in use (on a free-threaded build with the GIL off, a report made on a GIL
        build gives its free-threaded advice, with a warning).  Stages the report
        does not know keep their settings.  Whatever is not applied (an inconclusive
        verdict, a stage the pipeline lacks, an executor the function cannot run on,
        a stage on your own executor instance) is a ``TuningWarning`` saying why.

        Args:
            report: The path of the ``report.json`` diagnostic mode writes
                (``FTPIPE_DIAGNOSTIC_MODE=1``), its parsed document, or diagnoses.

        Raises:
            FileNotFoundError: No report at the path.
            ValueError, TypeError: ``report`` is not a diagnosis report.
        """
        self._stages = apply_report(self._stages, report, self._sized)
        return self

    def build(self, state: dict[str, Any] | None = None) -> Pipeline:
        """Return a ``Pipeline`` ready to run (it starts on ``with`` or iteration).

        Under ``FTPIPE_TUNING=path/to/report.json`` the report's advice is applied to
        the pipeline built (as ``apply_tuning`` does; the builder itself is unchanged).
        Under ``FTPIPE_DIAGNOSTIC_MODE=1`` (and with ``ftpipe.diagnose`` importable)
        this returns the diagnostic profiler instead; see the diagnostic-mode docs.

        Args:
            state: A checkpoint from ``Pipeline.state_dict()`` of a pipeline built
                like this one (same stages, seed and epoch): the new pipeline yields
                exactly what that one would have yielded next.

        Raises:
            TypeError, ValueError: ``state`` is not a checkpoint of this pipeline,
                or the pipeline cannot resume (see ``Pipeline.state_dict``).
        """
        config = self.config()
        if state is not None:
            config = resume(config, state)
        tuning = os.environ.get(TUNING_ENV, "")
        if tuning:
            config = replace(config, stages=tuple(apply_report(config.stages, tuning, self._sized)))
        hook = diagnostic_hook()
        if hook is not None:
            return hook(config)  # type: ignore[no-any-return]
        return Pipeline(config)

    def _add(self, stage: StageConfig) -> None:
        names = {s.name for s in self._stages}
        if stage.name in names:
            raise ValueError(f"stage name {stage.name!r} is used twice; names must be unique")
        self._stages.append(stage)

    @staticmethod
    def _builtin(kind: StageKind, label: str, **extra: Any) -> StageConfig:
        base = StageConfig(
            name=label,
            kind=kind,
            fn=None,
            fn_kind=FnKind.FUNCTION,
            concurrency=1,
            executor=None,
            ordered=True,
            on_error="raise",
            max_failures=None,
            retries=0,
            buffer_size=DEFAULT_BUFFER_SIZE,
        )
        return replace(base, **extra)
