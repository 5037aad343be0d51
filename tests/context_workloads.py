"""Stage functions and initializers for the worker_info / item_seed tests.

Importable by name, so process workers and subinterpreters can run them; module
state (``INITS``) is per process and per interpreter, which is what the tests count.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
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
