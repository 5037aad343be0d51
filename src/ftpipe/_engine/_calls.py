"""Stage calls that run to completion elsewhere, one input or a whole chunk at a time.

Executors return one result per submitted call, so generator and async stage
functions are wrapped here: the wrapper runs where the executor runs it (a
process, a subinterpreter, a Dask worker) and returns a plain list or value.

``call_chunk`` is the engine's unit of work on an executor: many inputs per
submitted call, one outcome per input, so a process or subinterpreter pays its
round trip once per chunk instead of once per item::

    call_chunk(fn, [x0, x1, x2], kind)  ->  ([f(x0), None, f(x2)], {1: exc}, seconds)

Everything here lives in an importable module so it crosses process and
interpreter boundaries by name.  Executors that cross a boundary turn the
failures into ``(exception, traceback text)`` pairs on the far side
(``pack_failures``) and back on this side (``unpack_failures``): exceptions
lose their traceback when pickled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter
from typing import Any

__all__ = [
    "CHUNK_KINDS",
    "RemoteTraceback",
    "call_chunk",
    "collect_async_generator",
    "collect_generator",
    "flatten",
    "pack_failures",
    "run_coroutine",
    "unpack_failures",
]

# Failures of one chunk: input index within the chunk -> its exception.
Failures = dict[int, BaseException]
# What call_chunk returns: results (None where the input failed), failures, seconds spent.
ChunkOutcome = tuple[list[Any], Failures, float]


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker; set as its ``__cause__``."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


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


def _star(fn: Callable[..., Any], args: Any) -> Any:
    return fn(*args)


def _plain(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


# How call_chunk calls fn on one input; the engine's FnKind values name them.
_CALLERS: dict[str, Callable[[Callable[..., Any], Any], Any]] = {
    "function": _plain,
    "star": _star,
    "generator": collect_generator,
    "async": run_coroutine,
    "async-generator": collect_async_generator,
}
CHUNK_KINDS = tuple(_CALLERS)


def call_chunk(fn: Callable[..., Any], items: list[Any], kind: str = "function") -> ChunkOutcome:
    """Call ``fn`` on every input of ``items``; never raises for a failing input.

    Args:
        fn: The stage function.
        items: The chunk's inputs.
        kind: How to call ``fn`` on one input: ``"function"`` (``fn(x)``),
            ``"star"`` (``fn(*x)``, for ``Executor.map`` over several iterables),
            ``"generator"`` / ``"async-generator"`` (a list of what it yields),
            ``"async"`` (the coroutine's result).

    Returns:
        ``(results, failures, seconds)``: ``results[i]`` is input ``i``'s result
        (None where it failed), ``failures`` maps the index of each failed input
        to its exception, ``seconds`` is the wall time the calls took here.
    """
    t0 = perf_counter()
    results: list[Any] = []
    failures: Failures = {}
    if kind == "function":
        # The hot path: map() runs the calls without a Python-level loop.  On a
        # failure, list.extend keeps what was appended, which tells us the index.
        pos = 0
        while pos < len(items):
            try:
                results.extend(map(fn, items[pos:] if pos else items))
            except BaseException as exc:  # noqa: BLE001 - reported per input
                failures[len(results)] = exc
                results.append(None)
            else:
                if len(results) < len(items):
                    # fn raised StopIteration, which extend() took for the end.
                    failures[len(results)] = RuntimeError("stage function raised StopIteration")
                    results.append(None)
            pos = len(results)
    else:
        call = _CALLERS[kind]
        for i, item in enumerate(items):
            try:
                results.append(call(fn, item))
            except BaseException as exc:  # noqa: BLE001 - reported per input
                failures[i] = exc
                results.append(None)
    return results, failures, perf_counter() - t0


def pack_failures(
    outcome: ChunkOutcome, pack: Callable[[BaseException], tuple[BaseException, str]]
) -> tuple[list[Any], dict[int, tuple[BaseException, str]], float]:
    """Make a chunk's failures survive pickling: ``pack(exc)`` -> (exception, traceback text)."""
    results, failures, seconds = outcome
    return results, {i: pack(exc) for i, exc in failures.items()}, seconds


def unpack_failures(
    packed: tuple[list[Any], dict[int, tuple[BaseException, str]], float],
    unpack: Callable[[BaseException, str], BaseException],
) -> ChunkOutcome:
    """Undo ``pack_failures`` on the caller's side: ``unpack(exc, tb)`` reattaches the traceback."""
    results, failures, seconds = packed
    return results, {i: unpack(exc, tb) for i, (exc, tb) in failures.items()}, seconds
