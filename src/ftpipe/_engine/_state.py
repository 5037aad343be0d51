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

An ``ordered=False`` stage (one, making one output per input, with no stage after
it that splits inputs) keeps, instead of a ledger, the inputs of each put in
delivery order: its checkpoint entry lists the inputs done past the first one not
done, and its resumed run skips them (its input channel drops them, numbering the
rest as before, so their item seeds repeat).  Nothing is lost or repeated; the
order, as in any run of it, is the order of completion.

Refused, with the reason, by ``state_dict()`` and ``build(state=)`` alike
(``_resumable``): a source that can neither be sliced (``Sequence``) nor restored
(``state_dict`` and ``load_state_dict``), an async source, and ``ordered=False``
stages other than that.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from ._channel import Channel
from ._config import PipelineConfig, StageConfig
from ._resumable import check_resumable, is_stateful_source, per_output

__all__ = [
    "STATE_VERSION",
    "Snapshots",
    "Tail",
    "resume",
    "state_of",
    "trace",
    "trim",
]

STATE_VERSION = 2


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


def _start(stage: StageConfig) -> list[Any]:
    """A stage's entry in a checkpoint taken before it delivered anything."""
    at: list[Any] = [stage.position_offset, stage.resume_drop]
    if not stage.ordered:
        at.append([stage.position_offset + e for e in stage.resume_skip])
    return at


def trace(
    stages: Sequence[StageConfig], consumed: int, outboxes: Sequence[Channel]
) -> tuple[list[list[Any]], int]:
    """Each stage's checkpoint entry and the source items drawn, after ``consumed``
    outputs of this run; the ledgers forget what is before (counts never go back).

    An ordered stage's entry is ``[inputs, drop]``; an ``ordered=False`` stage's is
    ``[inputs, 0, done]``: every input before ``inputs`` is done, and so are those
    in ``done``, which its resumed run skips.
    """
    positions: list[list[Any]] = [[] for _ in stages]  # each filled below, last first
    count = consumed
    for i in range(len(stages) - 1, -1, -1):
        offset = stages[i].position_offset
        if stages[i].ordered:
            inputs, extra = outboxes[i].committed(count)
            per = per_output(stages[i])
            if extra and per is not None:
                # The ledger knows ranges, not inputs; here each output has its own.
                inputs, extra = inputs + extra * per, 0
            positions[i] = [offset + inputs, extra]
        else:
            inputs, done = outboxes[i].done(count)
            positions[i] = [offset + inputs, 0, [offset + d for d in done]]
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
    positions = [_start(s) for s in stages]
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
    stages = tuple(_resumed(stage, at) for stage, at in zip(config.stages, positions, strict=True))
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
        source = Tail(source, position)
    return replace(
        config,
        source=source,
        stages=stages,
        start=consumed,
        source_offset=position,
        source_state=restored,
    )


def _listed(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"build(state=...): expected a list, got {value!r:.80}")
    return value


def _resumed(stage: StageConfig, at: Any) -> StageConfig:
    """``stage`` resumed at its checkpoint entry ``at`` (see ``trace``)."""
    if not isinstance(at, list) or len(at) != (2 if stage.ordered else 3):
        raise ValueError(
            f"build(state=...): stage {stage.name!r}'s entry must be "
            + ("[inputs, drop]" if stage.ordered else "[inputs, 0, done] (ordered=False)")
            + f", got {at!r:.80}"
        )
    position = _count(at[0], f"stage {stage.name!r}'s position")
    skip: tuple[int, ...] = ()
    if not stage.ordered:
        done = [_count(d, f"stage {stage.name!r}'s done input") for d in _listed(at[2])]
        if done != sorted(set(done)) or (done and done[0] <= position):
            raise ValueError(
                f"build(state=...): stage {stage.name!r}'s done inputs must be distinct "
                f"and sorted, each after its position {position}: got {done!r:.80}"
            )
        skip = tuple(d - position for d in done)
    return replace(
        stage,
        position_offset=position,
        resume_drop=_count(at[1], f"stage {stage.name!r}'s outputs to drop"),
        resume_skip=skip,
    )


class Tail(Sequence[Any]):
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
