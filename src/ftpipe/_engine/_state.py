"""Checkpoints: ``Pipeline.state_dict()`` and ``PipelineBuilder.build(state=...)``.

::

    state_dict(): outputs the consumer took (K) ──► {"consumed": K, seed, epoch, stages}
    build(state): K outputs ──► back through the stages: an aggregate(n) stage's K
                  outputs came from K*n inputs; a one-to-one stage's from K
                  ──► the source resumes at its item K_src (a sequence, sliced)
                  ──► every stage numbers its items from where the old run was,
                      so item_seed() repeats (StageConfig.position_offset)

This holds only where outputs map to inputs by arithmetic: an ordered pipeline
over a sequence (list, tuple, range, any ``Sequence``), whose stages are plain
functions (one output per input; thread, async or executor stages) and
aggregates.  Anything else (a generator source, a generator or async-generator
stage, disaggregate, ``ordered=False``, ``on_error="skip"``) is refused with the
reason, by ``state_dict()`` and by ``build(state=)`` alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from ._config import FnKind, PipelineConfig, StageConfig, StageKind

__all__ = ["STATE_VERSION", "check_resumable", "resume", "state_of"]

STATE_VERSION = 1


def check_resumable(config: PipelineConfig, what: str) -> None:
    """Raise ``ValueError`` saying why ``config`` cannot be checkpointed, if it cannot.

    Args:
        config: The pipeline.
        what: ``"state_dict()"`` or ``"build(state=...)"``, for the message.
    """
    source = config.source
    if not isinstance(source, Sequence) or isinstance(source, str | bytes):
        raise ValueError(
            f"{what}: the source ({type(source).__name__}) is not a sequence, so the "
            "pipeline cannot be resumed where it was: a generator or iterator cannot be "
            "rewound; use a list, a tuple, a range or a dataset with __len__ and __getitem__"
        )
    for stage in config.stages:
        reason = _unsupported(stage)
        if reason:
            raise ValueError(
                f"{what}: stage {stage.name!r} {reason}; checkpoints cover "
                "ordered pipelines of plain-function and aggregate stages"
            )


def _unsupported(stage: StageConfig) -> str:
    if stage.kind is StageKind.DISAGGREGATE:
        return "is a disaggregate stage (its outputs per input vary)"
    if stage.kind is StageKind.AGGREGATE:
        return ""
    if stage.fn_kind not in (FnKind.FUNCTION, FnKind.ASYNC):
        return f"is a {stage.fn_kind.value} function (its outputs per input vary)"
    if not stage.ordered:
        return "has ordered=False (outputs in completion order cannot be counted back)"
    if stage.on_error != "raise":
        return "has on_error='skip' (skipped inputs cannot be counted back)"
    return ""


def state_of(config: PipelineConfig, consumed: int) -> dict[str, Any]:
    """The checkpoint of ``config`` after the consumer took ``consumed`` outputs in all."""
    check_resumable(config, "state_dict()")
    return {
        "version": STATE_VERSION,
        "consumed": consumed,
        "seed": config.seed,
        "epoch": config.epoch,
        "stages": [stage.name for stage in config.stages],
    }


def resume(config: PipelineConfig, state: Any) -> PipelineConfig:
    """Return ``config`` set to yield what its checkpointed run would have yielded next.

    Raises:
        TypeError: ``state`` is not a checkpoint.
        ValueError: It does not fit this pipeline, or the pipeline cannot resume.
    """
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise TypeError(
            f"build(state=...): expected a dict from Pipeline.state_dict() (version "
            f"{STATE_VERSION}), got {type(state).__name__} {state!r:.80}"
        )
    check_resumable(config, "build(state=...)")
    names = [stage.name for stage in config.stages]
    if state.get("stages") != names:
        raise ValueError(
            f"build(state=...): the checkpoint is of stages {state.get('stages')}, "
            f"this pipeline has {names}"
        )
    if (state.get("seed"), state.get("epoch")) != (config.seed, config.epoch):
        raise ValueError(
            f"build(state=...): the checkpoint was taken with seed={state.get('seed')!r}, "
            f"epoch={state.get('epoch')!r}; this builder has seed={config.seed!r}, "
            f"epoch={config.epoch!r} (item seeds would not repeat)"
        )
    consumed = state.get("consumed")
    if isinstance(consumed, bool) or not isinstance(consumed, int) or consumed < 0:
        raise ValueError(f"build(state=...): 'consumed' must be an int >= 0, got {consumed!r}")
    # Walk back from the sink: how many inputs each stage had used up.
    offset = consumed
    stages = list(config.stages)
    for i in range(len(stages) - 1, -1, -1):
        if stages[i].kind is StageKind.AGGREGATE:
            offset *= stages[i].size
        else:
            stages[i] = replace(stages[i], position_offset=offset)
    source: Any = config.source
    return replace(config, source=_Tail(source, offset), stages=tuple(stages), start=consumed)


class _Tail(Sequence[Any]):
    """A sequence from item ``start`` on, without copying it."""

    def __init__(self, items: Sequence[Any], start: int) -> None:
        self._items = items
        self._start = min(start, len(items))

    def __len__(self) -> int:
        return len(self._items) - self._start

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._items[self._start + i]

    def __iter__(self) -> Iterator[Any]:
        items = self._items
        for i in range(self._start, len(items)):
            yield items[i]
