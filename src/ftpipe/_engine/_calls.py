"""Adapters that run a stage call to completion on another executor.

Executors return one result per submitted call, so generator and async stage
functions are wrapped here: the wrapper runs where the executor runs it (a
process, a subinterpreter, a Dask worker) and returns a plain list or value.
They live in an importable module so they cross process and interpreter
boundaries by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["collect_async_generator", "collect_generator", "flatten", "run_coroutine"]


def collect_generator(fn: Callable[[Any], Any], item: Any) -> list[Any]:
    """Run generator function ``fn`` on ``item`` and return everything it yields."""
    return list(fn(item))


def run_coroutine(fn: Callable[[Any], Any], item: Any) -> Any:
    """Run async function ``fn`` on ``item`` in a fresh event loop and return its result."""
    return asyncio.run(fn(item))


def collect_async_generator(fn: Callable[[Any], Any], item: Any) -> list[Any]:
    """Run async generator function ``fn`` on ``item`` and return everything it yields."""

    async def drain() -> list[Any]:
        return [x async for x in fn(item)]

    return asyncio.run(drain())


def flatten(items: Any) -> Any:
    """Yield the elements of one incoming iterable (the ``disaggregate`` stage)."""
    yield from items
