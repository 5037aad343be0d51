"""Argument checks shared by every layer, following one convention.

A value of the wrong type is a ``TypeError``; a value of the right type out of
range is a ``ValueError``; both messages name what was wrong and show the value.
"""

from __future__ import annotations

from typing import Any

__all__ = ["a_bool", "an_int", "non_negative_int", "positive_int"]


def positive_int(value: Any, what: str) -> int:
    """Return ``value`` if it is an int >= 1 (``bool`` is not an int here).

    Args:
        value: What the caller passed.
        what: How the message names it: ``"stage 'decode': concurrency"``.

    Raises:
        TypeError: ``value`` is not an int.
        ValueError: ``value`` is below 1.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be a positive int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


def an_int(value: Any, what: str) -> int:
    """Return ``value`` if it is an int (``bool`` is not an int here).

    Raises:
        TypeError: ``value`` is not an int.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r:.80}")
    return value


def non_negative_int(value: Any, what: str) -> int:
    """Return ``value`` if it is an int >= 0 (``bool`` is not an int here).

    Raises:
        TypeError: ``value`` is not an int.
        ValueError: ``value`` is negative.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int >= 0, got {type(value).__name__} {value!r:.80}")
    if value < 0:
        raise ValueError(f"{what} must be an int >= 0, got {value!r}")
    return value


def a_bool(value: Any, what: str) -> bool:
    """Return ``value`` if it is True or False.

    Raises:
        TypeError: ``value`` is not a bool.
    """
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be True or False, got {type(value).__name__} {value!r:.80}")
    return value
