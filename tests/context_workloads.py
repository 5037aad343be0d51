"""Stage functions and initializers for the worker_info / item_seed tests.

Importable by name, so process workers and subinterpreters can run them; module
state (``INITS``) is per process and per interpreter, which is what the tests count.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from typing import Any

import ftpipe

# Initializer runs seen by this interpreter: (tag, worker_info(), pid, thread id).
INITS: list[tuple[Any, ...]] = []
_lock = threading.Lock()  # guards INITS and _attempts: thread stages call from many threads
_attempts: dict[int, int] = {}


def record_init(tag: str) -> None:
    with _lock:
        INITS.append((tag, ftpipe.worker_info(), os.getpid(), threading.get_ident()))


def failing_init() -> None:
    raise LookupError("no such resource")


def seed_in_init() -> None:
    ftpipe.item_seed()


def info(x: int) -> tuple[Any, ...]:
    return x, ftpipe.worker_info(), os.getpid(), threading.get_ident()


def inits_here(x: int) -> tuple[Any, ...]:
    """The item, where it ran, and the initializer runs this process / interpreter saw."""
    with _lock:
        inits = list(INITS)
    return x, ftpipe.worker_info(), os.getpid(), inits


def seeded(x: int) -> tuple[int, int]:
    return x, ftpipe.item_seed()


def augment(x: int) -> tuple[int, float]:
    """A random augmentation: identical wherever and however often it runs."""
    rng = random.Random(ftpipe.item_seed())
    return x, x + rng.random()


def flaky_seeded(x: int) -> tuple[int, int]:
    """Fails the first attempt at every third item; a retry must see the same seed."""
    with _lock:
        tries = _attempts[x] = _attempts.get(x, 0) + 1
    if x % 3 == 0 and tries == 1:
        raise ValueError(f"first try at {x}")
    return x, ftpipe.item_seed()


def odd_only(x: int) -> Any:
    """A generator stage: zero or two outputs per input, so positions downstream shift."""
    if x % 2:
        yield x
        yield -x


async def async_seeded(x: int) -> tuple[int, int, Any]:
    await asyncio.sleep(0.001 * (x % 3))  # calls finish out of order
    return x, ftpipe.item_seed(), ftpipe.worker_info()


def spread(x: int) -> Any:
    """A generator stage: ``x % 4`` outputs, each with its own item seed."""
    for j in range(x % 4):
        yield x, j, ftpipe.item_seed()


def late_seeded(x: Any) -> tuple[Any, int]:
    """Takes 0-3 ms (by its input, not in input order): completion order is shuffled."""
    time.sleep((hash(x) * 7919 % 13) / 4000)
    return x, ftpipe.item_seed()


async def async_late_seeded(x: Any) -> tuple[Any, int]:
    await asyncio.sleep((hash(x) * 7919 % 13) / 4000)
    return x, ftpipe.item_seed()


def not_multiple_of_five(x: Any) -> Any:
    """Fails on multiples of 5 (for ``on_error="skip"``)."""
    if x[0] % 5 == 0:
        raise ValueError(f"{x[0]} is a multiple of 5")
    return x


class Counter:
    """A source that saves its position: ``state_dict()`` / ``load_state_dict()``.

    It is its own iterator, as the protocol asks: ``state_dict()`` describes the
    iteration in progress, and ``load_state_dict()`` before ``iter()`` continues it.
    ``loads`` records what was loaded (to check a resume loaded a snapshot).
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.i = 0
        self.loads: list[dict[str, int]] = []

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
        self.loads.append(state)
        self.i = state["i"]
