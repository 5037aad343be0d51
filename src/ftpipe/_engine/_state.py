"""Checkpoints: ``Pipeline.state_dict()`` and ``PipelineBuilder.build(state=...)``.

::

    state_dict(): K outputs taken ──► sink channel's ledger: from stage N's inputs
                  before n_N, plus the first k_N outputs of input n_N
                  ──► channel N-1's ledger at n_N ──► ... ──► the source at n_1
                  ──► {"consumed", "positions": [[n_i, k_i]...], "source": ...}
    build(state): the source resumes at item n_1 (a sequence, sliced; a stateful
                  source, from its latest snapshot at or before n_1, skipping
                  what is between); stage i numbers its inputs from n_i (so
                  item_seed() repeats) and its output channel drops the first
                  k_i outputs, which the old run had delivered already

Every ordered channel keeps the ledger (``Channel.track``), so this holds for
every stage kind: plain, async and generator functions (a generator stopped
mid-expansion runs that input again and its first k outputs are dropped),
``on_error="skip"`` (an input that made no output is done), aggregates with a
list still filling (its inputs are made again) and disaggregate, on any executor.
The made-again work must make the same outputs: stage functions deterministic
given their input and ``item_seed()``.

Refused, with the reason, by ``state_dict()`` and ``build(state=)`` alike: a
source that can neither be sliced (``Sequence``) nor restored (``state_dict`` and
``load_state_dict``), an async source, and ``ordered=False`` stages.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import AsyncIterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ._channel import Channel
from ._config import PipelineConfig, StageConfig

__all__ = [
    "STATE_VERSION",
    "Snapshots",
    "check_resumable",
    "is_sequence",
    "is_stateful_source",
    "resumable",
    "resume",
    "state_of",
    "trace",
    "trim",
]

STATE_VERSION = 2


def is_sequence(source: object) -> bool:
    """Whether ``source`` can be sliced: a ``Sequence``, or a dataset with ``__len__`` and
    ``__getitem__`` (a map-style dataset need not subclass ``Sequence``); not a mapping
    or a string.
    """
    if isinstance(source, str | bytes | Mapping):
        return False
    kind = type(source)
    return isinstance(source, Sequence) or (
        hasattr(kind, "__len__") and hasattr(kind, "__getitem__")
    )


def is_stateful_source(source: object) -> bool:
    """Whether ``source`` restores itself: ``state_dict()`` and ``load_state_dict()``.

    A sequence is sliced instead, even when it has them.
    """
    return (
        not is_sequence(source)
        and callable(getattr(source, "state_dict", None))
        and callable(getattr(source, "load_state_dict", None))
    )


def _refusal(config: PipelineConfig) -> str:
    source = config.source
    if isinstance(source, AsyncIterable):
        return (
            f"the source ({type(source).__name__}) is an async iterable, which cannot be "
            "resumed where it was; use a sequence or a source with state_dict() and "
            "load_state_dict()"
        )
    if not (is_sequence(source) or is_stateful_source(source)):
        return (
            f"the source ({type(source).__name__}) is not a sequence and has no "
            "state_dict()/load_state_dict(), so the pipeline cannot be resumed where it "
            "was: a generator or iterator cannot be rewound; use a list, a tuple, a range, "
            "a dataset with __len__ and __getitem__, or a source that saves its position"
        )
    for stage in config.stages:
        if not stage.ordered:
            return (
                f"stage {stage.name!r} has ordered=False: outputs in completion order "
                "cannot be traced back to the inputs they came from"
            )
    return ""


def resumable(config: PipelineConfig) -> bool:
    """Whether ``config`` can be checkpointed (so its run keeps ledgers)."""
    return not _refusal(config)


def check_resumable(config: PipelineConfig, what: str) -> None:
    """Raise ``ValueError`` saying why ``config`` cannot be checkpointed, if it cannot.

    Args:
        config: The pipeline.
        what: ``"state_dict()"`` or ``"build(state=...)"``, for the message.
    """
    reason = _refusal(config)
    if reason:
        raise ValueError(f"{what}: {reason}")


class Snapshots:
    """A stateful source's ``state_dict()`` taken by the source thread between chunks.

    ``add`` is called by the source thread, ``at`` by the consumer's: a lock between.
    """

    def __init__(self, position: int, first: tuple[int, Any]) -> None:
        self._lock = threading.Lock()
        self._kept: deque[tuple[int, Any]] = deque([first])
        self.position = position  # the absolute number of the source's first item this run

    def add(self, drawn: int, state: Any) -> None:
        with self._lock:
            self._kept.append((self.position + drawn, state))

    def at(self, position: int) -> tuple[Any, int]:
        """``(state, skip)``: load ``state``, skip ``skip`` items, and the next is ``position``.

        Forgets older snapshots: call it with positions that never go back.
        """
        with self._lock:
            kept = self._kept
            while len(kept) > 1 and kept[1][0] <= position:
                kept.popleft()
            assert kept and kept[0][0] <= position, "a snapshot precedes every item put"
            taken, state = kept[0]
            return state, position - taken


def trace(
    stages: Sequence[StageConfig], consumed: int, outboxes: Sequence[Channel]
) -> tuple[list[list[int]], int]:
    """Each stage's ``[inputs, drop]`` and the source items drawn, after ``consumed``
    outputs of this run; the ledgers forget what is before (counts never go back).
    """
    positions = [[s.position_offset, s.resume_drop] for s in stages]
    count = consumed
    for i in range(len(stages) - 1, -1, -1):
        inputs, extra = outboxes[i].committed(count)
        positions[i] = [stages[i].position_offset + inputs, extra]
        count = inputs
    return positions, count


def trim(
    config: PipelineConfig,
    consumed: int,
    outboxes: Sequence[Channel],
    snapshots: Snapshots | None,
) -> None:
    """Let the ledgers and the source's snapshots forget what the consumer took."""
    drawn = trace(config.stages, consumed, outboxes)[1] if config.stages else consumed
    if snapshots is not None:
        snapshots.at(config.source_offset + drawn)


def state_of(
    config: PipelineConfig,
    consumed: int,
    outboxes: Sequence[Channel] | None,
    snapshots: Snapshots | None,
) -> dict[str, Any]:
    """The checkpoint of ``config`` after the consumer took ``consumed`` outputs of this run.

    Args:
        config: The pipeline.
        consumed: Outputs taken since this run started.
        outboxes: Each stage's output channel, tracked; None before the run started
            or before this run delivered anything (the checkpoint is where it started).
        snapshots: The stateful source's snapshots (None for a sequence, or before
            the run started).
    """
    check_resumable(config, "state_dict()")
    stages = config.stages
    positions = [[s.position_offset, s.resume_drop] for s in stages]
    source_at = config.source_offset + (0 if stages or outboxes is None else consumed)
    if outboxes is not None and stages:
        positions, drawn = trace(stages, consumed, outboxes)
        source_at = config.source_offset + drawn
    source: dict[str, Any] = {"position": source_at}
    if is_stateful_source(config.source):
        if snapshots is not None:
            state, skip = snapshots.at(source_at)
        elif config.source_state is not None:  # resumed, not started: where it resumes
            state, skip = config.source_state
        else:  # not started: the source before its first item
            state, skip = config.source.state_dict(), 0  # type: ignore[union-attr]
        source.update(state=state, skip=skip)
    return {
        "version": STATE_VERSION,
        "consumed": config.start + consumed,
        "seed": config.seed,
        "epoch": config.epoch,
        "stages": [stage.name for stage in stages],
        "positions": positions,
        "source": source,
    }


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"build(state=...): {what} must be an int >= 0, got {value!r}")
    return value


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
    consumed = _count(state.get("consumed"), "'consumed'")
    positions = state.get("positions")
    if not isinstance(positions, list) or len(positions) != len(names):
        raise ValueError("build(state=...): 'positions' must list one [inputs, drop] per stage")
    stages = tuple(
        replace(
            stage,
            position_offset=_count(at[0], f"stage {stage.name!r}'s position"),
            resume_drop=_count(at[1], f"stage {stage.name!r}'s outputs to drop"),
        )
        for stage, at in zip(config.stages, positions, strict=True)
    )
    source_state = state.get("source")
    if not isinstance(source_state, dict):
        raise ValueError("build(state=...): 'source' must be a dict")
    position = _count(source_state.get("position"), "the source's position")
    source: Any = config.source
    restored: tuple[Any, int] | None = None
    if is_stateful_source(source):
        if "state" not in source_state:
            raise ValueError(
                f"build(state=...): the checkpoint is of a sequence source; this source "
                f"({type(source).__name__}) restores itself with load_state_dict()"
            )
        restored = (source_state["state"], _count(source_state.get("skip"), "'skip'"))
    else:
        source = _Tail(source, position)
    return replace(
        config,
        source=source,
        stages=stages,
        start=consumed,
        source_offset=position,
        source_state=restored,
    )


class _Tail(Sequence[Any]):
    """A sequence (or a dataset with ``__len__`` and ``__getitem__``) from item ``start``
    on, without copying it."""

    def __init__(self, items: Any, start: int) -> None:
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
