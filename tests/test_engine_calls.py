"""Calling a stage function of any kind (_engine/_calls.py): outputs, caller, call_each, call_chunk."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from ftpipe._engine._calls import call_chunk, call_each, caller, flatten, outputs, outputs_async


def _double(x: int) -> int:
    return 2 * int(x)


def _twice(x: int):
    yield int(x)
    yield int(x)


async def _double_async(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * int(x)


async def _twice_async(x: int):
    for _ in range(2):
        await asyncio.sleep(0)
        yield int(x)


KINDS = [
    ("function", _double, [6]),
    ("generator", _twice, [3, 3]),
    ("async", _double_async, [6]),
    ("async-generator", _twice_async, [3, 3]),
]


@pytest.mark.parametrize(("kind", "fn", "expected"), KINDS)
def test_outputs_of_every_kind_are_a_list(kind: str, fn: Any, expected: list[int]) -> None:
    assert outputs(fn, kind, 3) == expected
    assert asyncio.run(outputs_async(fn, kind, 3)) == expected


def test_outputs_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        outputs(_double, "coroutine", 3)
    with pytest.raises(ValueError, match="unknown kind"):
        caller(_double, "coroutine")


def test_caller_gives_each_thread_one_event_loop_for_async_kinds() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def which_loop(x: int) -> int:
        loops.append(asyncio.get_running_loop())
        return x

    results: dict[str, list[Any]] = {}

    def worker(name: str) -> None:
        call, close = caller(which_loop, "async")
        try:
            results[name] = [call(i) for i in range(3)]
        finally:
            close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {"a": [[0], [1], [2]], "b": [[0], [1], [2]]}
    assert len(set(map(id, loops))) == 2  # one loop per thread, reused by its calls
    assert all(loop.is_closed() for loop in loops)


def test_caller_of_a_generator_exhausts_it() -> None:
    seen: list[int] = []

    def gen(x: int):
        for i in range(x):
            seen.append(i)
            yield i

    call, close = caller(gen, "generator")
    assert call(3) == [0, 1, 2]
    close()
    assert seen == [0, 1, 2]


def _fail_on_odd(x: int) -> int:
    if x % 2:
        raise ValueError(x)
    return x


def test_call_each_hands_a_failure_over_before_later_inputs_run() -> None:
    called: list[int] = []

    def fn(x: int) -> int:
        called.append(x)
        return _fail_on_odd(x)

    out: list[Any] = []
    seen: list[tuple[int, list[int]]] = []

    def on_failure(i: int, exc: BaseException) -> None:
        seen.append((i, list(called)))
        out.append(f"failed {exc}")

    call_each(fn, [0, 1, 2, 3, 4], out, on_failure)
    assert out == [0, "failed 1", 2, "failed 3", 4]
    assert seen == [(1, [0, 1]), (3, [0, 1, 2, 3])]


def test_call_each_turns_stop_iteration_into_a_failure() -> None:
    def fn(x: int) -> int:
        if x == 1:
            raise StopIteration
        return x

    failures: list[tuple[int, BaseException]] = []
    out: list[Any] = []
    call_each(fn, [0, 1, 2], out, lambda i, exc: failures.append((i, exc)))
    assert out == [0, 2]
    assert [i for i, _ in failures] == [1] and isinstance(failures[0][1], RuntimeError)


def test_call_each_stops_at_what_on_failure_raises() -> None:
    class Stop(Exception):
        pass

    def on_failure(i: int, exc: BaseException) -> None:
        raise Stop

    out: list[Any] = []
    with pytest.raises(Stop):
        call_each(_fail_on_odd, [0, 2, 3, 4], out, on_failure)
    assert out == [0, 2]


@pytest.mark.parametrize(
    ("kind", "fn", "expected"),
    [
        ("function", _double, [0, None, 4]),
        ("generator", _twice, [[0, 0], None, [2, 2]]),
        ("async", _double_async, [0, None, 4]),
        ("async-generator", _twice_async, [[0, 0], None, [2, 2]]),
    ],
)
def test_call_chunk_reports_each_inputs_outcome(kind: str, fn: Any, expected: list[Any]) -> None:
    results, failures, seconds = call_chunk(fn, [0, "x", 2], kind)
    assert results == expected
    assert list(failures) == [1]
    assert seconds >= 0


def test_call_chunk_star_and_unknown_kinds() -> None:
    assert call_chunk(pow, [(2, 3), (3, 2)], "star")[0] == [8, 9]
    with pytest.raises(ValueError, match="unknown call_chunk kind"):
        call_chunk(_double, [1], "coroutine")


def test_flatten_yields_the_elements() -> None:
    assert list(flatten([1, 2, 3])) == [1, 2, 3]
