"""``collate`` (samples -> one batch of tensors) and ``as_tensors`` (convert, no stacking).

Both follow ``torch.utils.data.default_collate`` / ``default_convert``, with two
differences: tuples stay tuples (``default_collate`` turns them into lists), and
a mismatch names the sample and the field (``samples[3]['image']``).

Copies: stacking N samples into one batch needs one copy (``np.stack`` /
``torch.stack``); turning a numpy array into a tensor never does
(``torch.from_numpy`` shares its memory).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["as_tensors", "collate", "map_leaves"]

try:
    import numpy as np
except ImportError:  # pragma: no cover - torch works without numpy, so do we
    np = None  # type: ignore[assignment]

# numpy dtype kinds torch.from_numpy cannot take: object, str, bytes, void.
_UNCONVERTIBLE_KINDS = frozenset("OSUV")


def collate(samples: Sequence[Any]) -> Any:
    """Merge a list of samples into one batch, as ``default_collate`` does.

    Use it as the stage after ``aggregate(n)``:
    ``.aggregate(32).pipe(ftpipe.torch.collate)``.

    - tensors -> ``torch.stack`` (new leading batch dimension)
    - numpy arrays -> ``np.stack`` then ``torch.from_numpy`` (one copy, the stack)
    - numpy scalars -> a tensor of their dtype; Python ``float`` -> float64,
      ``int`` -> int64, ``bool`` -> bool tensor
    - dicts -> a dict of collated fields; tuples, named tuples and lists ->
      the same container of collated positions
    - ``str`` / ``bytes`` / anything else -> left as a list

    A single numpy array that is already a batch can be converted without a
    copy with ``as_tensors``.

    Args:
        samples: A non-empty sequence of samples with the same structure.

    Returns:
        The batch, with the structure of one sample.

    Raises:
        ValueError: ``samples`` is empty, or samples disagree on shape, keys or
            length; the message names the first disagreeing sample and field.
        TypeError: A numpy array of object/str dtype (which torch cannot hold).
    """
    if isinstance(samples, str | bytes) or not isinstance(samples, Sequence):
        raise TypeError(
            f"collate() takes a sequence of samples (e.g. a list from aggregate()), "
            f"got {type(samples).__name__}"
        )
    if len(samples) == 0:
        raise ValueError("collate() got an empty list of samples")
    return _collate(list(samples), "samples[i]")


def _collate(samples: list[Any], where: str) -> Any:
    first = samples[0]
    if isinstance(first, torch.Tensor):
        _same_shapes(samples, where, tuple(first.shape))
        return torch.stack(samples)
    if np is not None and isinstance(first, np.ndarray):
        if first.dtype.kind in _UNCONVERTIBLE_KINDS:
            raise TypeError(
                f"collate: {where} is a numpy array of dtype {first.dtype}, which torch cannot hold"
            )
        _same_shapes(samples, where, first.shape)
        return torch.from_numpy(np.stack(samples))
    if np is not None and isinstance(first, np.generic):
        if first.dtype.kind in _UNCONVERTIBLE_KINDS:
            return samples
        return torch.from_numpy(np.array(samples, dtype=first.dtype))
    if isinstance(first, bool):
        return torch.tensor(samples, dtype=torch.bool)
    if isinstance(first, int):
        return torch.tensor(samples, dtype=torch.int64)
    if isinstance(first, float):
        return torch.tensor(samples, dtype=torch.float64)
    if isinstance(first, str | bytes):
        return samples
    if isinstance(first, Mapping):
        keys = first.keys()
        for i, sample in enumerate(samples):
            if not isinstance(sample, Mapping) or sample.keys() != keys:
                found = sorted(sample) if isinstance(sample, Mapping) else type(sample).__name__
                raise ValueError(
                    f"collate: {_at(where, i)} has keys {found}, but samples[0] has {sorted(keys)}"
                )
        return _like(
            first, {key: _collate([s[key] for s in samples], f"{where}[{key!r}]") for key in keys}
        )
    if isinstance(first, tuple | list):
        size = len(first)
        for i, sample in enumerate(samples):
            if len(sample) != size:
                raise ValueError(
                    f"collate: {_at(where, i)} has {len(sample)} elements, but samples[0] has {size}"
                )
        fields = [_collate([s[j] for s in samples], f"{where}[{j}]") for j in range(size)]
        if isinstance(first, tuple) and hasattr(first, "_fields"):  # named tuple
            return type(first)(*fields)
        return tuple(fields) if isinstance(first, tuple) else fields
    return samples


def _same_shapes(samples: list[Any], where: str, shape: tuple[int, ...]) -> None:
    for i, sample in enumerate(samples):
        if tuple(sample.shape) != shape:
            raise ValueError(
                f"collate: {_at(where, i)} has shape {tuple(sample.shape)}, but samples[0] has "
                f"{shape}; pad or resize samples to one shape before collating"
            )


def _at(where: str, i: int) -> str:
    return where.replace("samples[i]", f"samples[{i}]", 1)


def as_tensors(obj: Any) -> Any:
    """Convert numpy arrays (in any nesting of dicts, tuples, lists) to tensors, without a copy.

    Like ``default_convert``: for pipelines that build whole batches in numpy
    (e.g. in a process executor, whose arrays arrive through shared memory),
    this is the zero-copy last step.  Read-only arrays and arrays with negative
    strides are copied: a tensor is always writable, and torch refuses negative strides.
    """
    return map_leaves(_as_tensor, obj)


def _as_tensor(obj: Any) -> Any:
    if np is not None and isinstance(obj, np.ndarray):
        if obj.dtype.kind in _UNCONVERTIBLE_KINDS:
            return obj
        if not obj.flags.writeable or any(stride < 0 for stride in obj.strides):
            obj = obj.copy()  # torch.from_numpy refuses negative strides (e.g. a[::-1])
        return torch.from_numpy(obj)
    if np is not None and isinstance(obj, np.generic):
        return obj if obj.dtype.kind in _UNCONVERTIBLE_KINDS else torch.from_numpy(np.asarray(obj))
    return obj


def map_leaves(fn: Callable[[Any], Any], obj: Any) -> Any:
    """Apply ``fn`` to every leaf of nested dicts, named tuples, tuples and lists.

    The containers are rebuilt around the new leaves: a mapping keeps its type
    when that type can be built from a dict (``OrderedDict``), else becomes a
    dict; named tuples stay named tuples; other tuples and lists become plain ones.
    """
    if isinstance(obj, Mapping):
        return _like(obj, {key: map_leaves(fn, value) for key, value in obj.items()})
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(map_leaves(fn, v) for v in obj))
    if isinstance(obj, tuple):
        return tuple(map_leaves(fn, v) for v in obj)
    if isinstance(obj, list):
        return [map_leaves(fn, v) for v in obj]
    return fn(obj)


def _like(mapping: Mapping[Any, Any], out: dict[Any, Any]) -> Any:
    """``out`` as ``mapping``'s type when that type can be built from a dict, else ``out``."""
    try:
        return type(mapping)(out)  # type: ignore[call-arg]
    except TypeError:
        return out
