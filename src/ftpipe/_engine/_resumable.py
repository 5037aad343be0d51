"""Whether a pipeline can be checkpointed, and if not, why (``_state``).

Resumable: a source that can be sliced (a sequence, or a dataset with ``__len__``
and ``__getitem__``) or restored (``state_dict()`` and ``load_state_dict()``), not
an async one; ordered stages, and at most one ``ordered=False`` stage, making one
output per input, with no stage after it that splits inputs.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping, Sequence

from ._config import FnKind, PipelineConfig, StageConfig, StageKind

__all__ = ["check_resumable", "is_sequence", "is_stateful_source", "per_output", "resumable"]


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
    return _unordered_refusal(config.stages)


def _unordered_refusal(stages: Sequence[StageConfig]) -> str:
    """Why an ``ordered=False`` stage cannot be checkpointed here ("" if it can)."""
    unordered = [i for i, stage in enumerate(stages) if not stage.ordered]
    if not unordered:
        return ""
    if len(unordered) > 1:
        names = ", ".join(repr(stages[i].name) for i in unordered)
        return (
            f"stages {names} have ordered=False: a checkpoint follows one stage that "
            "delivers in completion order; make the others ordered"
        )
    u = stages[unordered[0]]
    splits = (FnKind.GENERATOR, FnKind.ASYNC_GENERATOR)
    if u.fn_kind in splits or u.on_error == "skip":
        return (
            f"stage {u.name!r} has ordered=False and "
            + ("is a generator" if u.fn_kind in splits else "on_error='skip'")
            + ": in completion order, an output can be traced back to its input only "
            "where every input makes exactly one output"
        )
    for later in stages[unordered[0] + 1 :]:
        if per_output(later) is None:
            return (
                f"stage {later.name!r} "
                + ("skips failing inputs" if later.on_error == "skip" else "splits inputs")
                + f" after the ordered=False stage {u.name!r}: which inputs its outputs "
                "came from cannot be found again, as its inputs come in another order in "
                "every run"
            )
    return ""


def per_output(stage: StageConfig) -> int | None:
    """How many inputs make each output of ``stage``, where that is fixed: 1 for a
    function that cannot skip, the list size for ``aggregate``; else None."""
    if stage.kind is StageKind.AGGREGATE:
        return stage.size
    if stage.fn_kind in (FnKind.FUNCTION, FnKind.ASYNC) and stage.on_error != "skip":
        return 1
    return None


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
