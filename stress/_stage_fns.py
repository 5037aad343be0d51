"""Stage functions and sources for the stress tests: deterministic, failing on purpose.

Module-level (bound with ``functools.partial``) so process and interpreter executors
can import them by name; this module imports nothing a subinterpreter refuses.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

MOD = 100_003


class StageFault(Exception):
    """Raised on purpose by a stage function for chosen items."""


class SourceFault(Exception):
    """Raised on purpose by a source."""


class ConsumerFault(Exception):
    """Raised on purpose by the code iterating a pipeline."""


def fails(x: Any, salt: int, fail_mod: int) -> bool:
    """Whether the stage with ``salt`` fails on int ``x`` (lists never fail)."""
    return fail_mod > 0 and isinstance(x, int) and (x + salt) % fail_mod == 0


def slow(x: Any, salt: int, latency: float) -> bool:
    return latency > 0 and isinstance(x, int) and (x * 7 + salt) % 4 == 0


def map_value(x: Any, salt: int) -> Any:
    """The deterministic per-leaf transformation every plain/async stage applies."""
    if isinstance(x, list):
        return [map_value(v, salt) for v in x]
    return (x * 31 + salt) % MOD


def plain_stage(salt: int, fail_mod: int, latency: float, x: Any) -> Any:
    if slow(x, salt, latency):
        time.sleep(latency)
    if fails(x, salt, fail_mod):
        raise StageFault(f"planned failure on {x!r} (salt {salt})")
    return map_value(x, salt)


def gen_stage(salt: int, fail_mod: int, latency: float, x: Any) -> Any:
    """Yield 0, 1 or 2 outputs (2 more for some inputs), or fail before yielding any.

    A generator that fails after yielding is left to tests/test_engine_regressions.py:
    the engine keeps such partial output on one path and drops it on others.
    """
    if fails(x, salt, fail_mod):
        raise StageFault(f"planned failure on {x!r} (salt {salt})")
    n = x % 3 + (2 if x % 11 == 0 else 0)
    for j in range(n):
        if j == 1 and slow(x, salt, latency):
            time.sleep(latency)
        yield (x * 3 + j + salt) % MOD


def gen_model(salt: int, x: int) -> list[int]:
    n = x % 3 + (2 if x % 11 == 0 else 0)
    return [(x * 3 + j + salt) % MOD for j in range(n)]


async def async_stage(salt: int, fail_mod: int, latency: float, x: Any) -> Any:
    if slow(x, salt, latency):
        await asyncio.sleep(latency)
    else:
        await asyncio.sleep(0)
    if fails(x, salt, fail_mod):
        raise StageFault(f"planned failure on {x!r} (salt {salt})")
    return map_value(x, salt)


class FailingSource:
    """An iterable of ``values`` that raises ``SourceFault`` instead of yielding item ``fail_at``."""

    def __init__(self, values: list[int], fail_at: int | None) -> None:
        self.values = values
        self.fail_at = fail_at

    def __iter__(self) -> Any:
        for i, v in enumerate(self.values):
            if i == self.fail_at:
                raise SourceFault(f"planned source failure at item {i}")
            yield v

    def __repr__(self) -> str:
        return f"FailingSource(len={len(self.values)}, fail_at={self.fail_at})"


class AsyncSource:
    """An async iterable over ``values`` (exercises the engine's async source path)."""

    def __init__(self, values: list[int], fail_at: int | None) -> None:
        self.values = values
        self.fail_at = fail_at

    def __aiter__(self) -> Any:
        return self._gen()

    async def _gen(self) -> Any:
        for i, v in enumerate(self.values):
            if i == self.fail_at:
                raise SourceFault(f"planned source failure at item {i}")
            if i % 16 == 0:
                await asyncio.sleep(0)
            yield v

    def __repr__(self) -> str:
        return f"AsyncSource(len={len(self.values)}, fail_at={self.fail_at})"


def pid_after(delay: float, x: Any) -> int:
    """Return the worker's process id after ``delay`` seconds (for kill tests)."""
    import os

    time.sleep(delay)
    return os.getpid()


def sleep_then(delay: float, x: Any) -> Any:
    time.sleep(delay)
    return x


def endless() -> Any:
    """An endless source: 0, 1, 2, ..."""
    i = 0
    while True:
        yield i
        i += 1


class Endless:
    """A picklable endless source (generators cannot cross into a subprocess)."""

    def __iter__(self) -> Any:
        return endless()


def negate(x: Any) -> Any:
    """``-x`` (numpy arrays come back as new arrays through shared memory)."""
    return -x


def seeded_stage(salt: int, x: Any) -> Any:
    """``x`` paired with its item seed (imported here: a subinterpreter may refuse ftpipe)."""
    import ftpipe

    return [map_value(x, salt), ftpipe.item_seed()]


def expand_stage(salt: int, x: Any) -> Any:
    """0 to 3 outputs for any input (a list counts by its length): a generator stage."""
    key = x if isinstance(x, int) else len(x) * 7
    for j in range(key % 4):
        yield (key * 3 + j + salt) % MOD


class SavingSource:
    """A source that saves its position (``state_dict()`` / ``load_state_dict()``)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.i = 0

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> int:
        if self.i >= self.n:
            raise StopIteration
        self.i += 1
        return self.i - 1

    def state_dict(self) -> dict[str, int]:
        return {"i": self.i}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.i = state["i"]
