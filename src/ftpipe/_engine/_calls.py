"""Calling a stage function of any kind: one input's outputs as a list, or a whole chunk.

::

    outputs(fn, kind, item)        "function"         [fn(item)]
      │                            "generator"        list(fn(item))
      └─ run(outputs_async(...)) ◄─ "async"            [await fn(item)]
         (asyncio.run, or the       "async-generator"  [x async for x in fn(item)]
          thread's own loop)

    call_chunk(fn, [x0, x1, x2], kind)  ->  ([f(x0), None, f(x2)], {1: exc}, seconds)

``outputs`` is the one place that knows how each kind of function produces its
outputs; thread stages, the async stage, executor chunks and the detector all
call through it (``caller`` gives a thread its own event loop for async kinds).

``call_chunk`` is the engine's unit of work on an executor: many inputs per
submitted call, one outcome per input, so a process or subinterpreter pays its
round trip once per chunk instead of once per item.  Everything here lives in
an importable module so it crosses process and interpreter boundaries by name.
Executors that cross a boundary turn the failures into ``(exception, traceback
text)`` pairs on the far side (``pack_failures``) and back on this side
(``unpack_failures``): exceptions lose their traceback when pickled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from time import perf_counter
from typing import Any

from ._context import ChunkContext, enter_chunk, leave_chunk, positioned

__all__ = [
    "ChunkOutcome",
    "RemoteTraceback",
    "call_chunk",
    "call_each",
    "caller",
    "flatten",
    "outputs",
    "outputs_async",
    "pack_failures",
    "unpack_failures",
]

# Failures of one chunk: input index within the chunk -> its exception.
Failures = dict[int, BaseException]
# What call_chunk returns: results (None where the input failed), failures, seconds spent.
ChunkOutcome = tuple[list[Any], Failures, float]

_KINDS = ("function", "generator", "async", "async-generator")
_CHUNK_KINDS = (*_KINDS, "star")


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker; set as its ``__cause__``."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


async def outputs_async(fn: Callable[[Any], Any], kind: str, item: Any) -> list[Any]:
    """Every output of ``fn(item)`` as a list, on the running event loop.

    Args:
        fn: The stage function.
        kind: How ``fn`` produces outputs (an ``FnKind`` or its value):
            ``"function"``, ``"generator"``, ``"async"`` or ``"async-generator"``.
        item: The input.
    """
    if kind == "async":
        return [await fn(item)]
    if kind == "async-generator":
        return [x async for x in fn(item)]
    return outputs(fn, kind, item)


def outputs(
    fn: Callable[[Any], Any],
    kind: str,
    item: Any,
    run: Callable[[Coroutine[Any, Any, list[Any]]], list[Any]] = asyncio.run,
) -> list[Any]:
    """Every output of ``fn(item)`` as a list, whatever the kind of ``fn``.

    Args:
        fn: The stage function.
        kind: How ``fn`` produces outputs (an ``FnKind`` or its value):
            ``"function"`` (one output), ``"generator"`` (everything it yields,
            the generator exhausted), ``"async"`` or ``"async-generator"``.
        item: The input.
        run: Runs a coroutine to completion for the async kinds: ``asyncio.run``
            (a fresh event loop per call) or a loop's ``run_until_complete``.

    Raises:
        Whatever ``fn`` raises; ValueError for an unknown ``kind``.
    """
    if kind == "function":
        return [fn(item)]
    if kind == "generator":
        return list(fn(item))
    if kind not in _KINDS:
        raise ValueError(f"unknown kind of stage function {kind!r}; expected one of {_KINDS}")
    return run(outputs_async(fn, kind, item))


def _nothing() -> None:
    pass


def caller(
    fn: Callable[[Any], Any], kind: str
) -> tuple[Callable[[Any], list[Any]], Callable[[], None]]:
    """Return ``(call, close)`` for one thread: ``call(item)`` is ``outputs(fn, kind, item)``.

    Async kinds run on an event loop created here and owned by the calling thread
    (every call of this thread reuses it); ``close()`` closes it.  Call ``caller``
    in each thread that calls, and ``close()`` in that thread when it is done.
    """
    if kind in ("async", "async-generator"):
        loop = asyncio.new_event_loop()
        return partial(outputs, fn, kind, run=loop.run_until_complete), loop.close
    if kind not in _KINDS:
        raise ValueError(f"unknown kind of stage function {kind!r}; expected one of {_KINDS}")
    return partial(outputs, fn, kind), _nothing


def flatten(items: Any) -> Any:
    """Yield the elements of one incoming iterable (the ``disaggregate`` stage's function)."""
    yield from items


def call_each(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    out: list[Any],
    on_failure: Callable[[int, BaseException], None],
) -> None:
    """Append ``fn(x)`` to ``out`` for each input, with no Python-level loop while calls succeed.

    The hot path of plain functions: ``map`` runs the calls, and on a failure
    ``list.extend`` keeps what was appended, which tells the failing index.

    Args:
        fn: A plain function (one output per input).
        items: The inputs.
        out: Where the outputs go.
        on_failure: ``on_failure(i, exc)``, called at once when input ``i`` fails
            (before any later input runs); it appends to ``out`` whatever stands
            for that input, if anything.  What it raises ends the calls.
    """
    pos = 0
    while pos < len(items):
        base = len(out)
        try:
            out.extend(map(fn, items[pos:] if pos else items))
            failure: BaseException | None = None
        except BaseException as exc:  # noqa: BLE001 - on_failure decides
            failure = exc
        i = pos + len(out) - base
        if failure is None:
            if i == len(items):
                return
            # map() ended early: fn raised StopIteration, which extend() took for the end.
            failure = RuntimeError("stage function raised StopIteration")
        on_failure(i, failure)
        pos = i + 1


def _call_one(fn: Callable[..., Any], kind: str, item: Any) -> Any:
    """What call_chunk reports for one input, for kinds other than "function"."""
    if kind == "star":
        return fn(*item)
    if kind == "async":
        return outputs(fn, kind, item)[0]
    return outputs(fn, kind, item)


def call_chunk(
    fn: Callable[..., Any],
    items: Sequence[Any],
    kind: str = "function",
    ctx: ChunkContext | None = None,
) -> ChunkOutcome:
    """Call ``fn`` on every input of ``items``; never raises for a failing input.

    Args:
        fn: The stage function.
        items: The chunk's inputs.
        kind: How to call ``fn`` on one input: ``"function"`` (``fn(x)``),
            ``"star"`` (``fn(*x)``, for ``Executor.map`` over several iterables),
            ``"generator"`` / ``"async-generator"`` (a list of what it yields),
            ``"async"`` (the coroutine's result, on a fresh event loop).
        ctx: The stage the chunk belongs to (an executor stage sends it): the
            calls then see ``worker_info()`` and, with a seed, ``item_seed()``.

    Returns:
        ``(results, failures, seconds)``: ``results[i]`` is input ``i``'s result
        (None where it failed), ``failures`` maps the index of each failed input
        to its exception, ``seconds`` is the wall time the calls took here.
    """
    if ctx is not None:
        previous = enter_chunk(ctx)
        try:
            return call_chunk(fn, positioned(items, ctx.seq0, ctx.key), kind)
        finally:
            leave_chunk(previous)
    t0 = perf_counter()
    results: list[Any] = []
    failures: Failures = {}

    def record(i: int, exc: BaseException) -> None:
        failures[i] = exc
        results.append(None)

    if kind == "function":
        call_each(fn, items, results, record)
    elif kind not in _CHUNK_KINDS:
        raise ValueError(f"unknown call_chunk kind {kind!r}; expected one of {_CHUNK_KINDS}")
    else:
        for i, item in enumerate(items):
            try:
                results.append(_call_one(fn, kind, item))
            except BaseException as exc:  # noqa: BLE001 - reported per input
                record(i, exc)
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
