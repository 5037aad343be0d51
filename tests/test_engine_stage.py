"""What every stage kind shares (_engine/_stage.py, _plan.py): one retry policy, one error policy.

Each test runs the same pipeline on every shape of stage: a plain function
(batched calls), a generator with and without retries (collected, streamed), an
async function and an async generator (the event-loop stage), and a function on
an executor (chunks).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import pytest

import ftpipe
from ftpipe._engine._plan import worker_plan
from ftpipe._engine._thread_stage import (
    aggregate_worker,
    batched_worker,
    collected_worker,
    streamed_worker,
)


def _notes(exc: BaseException) -> list[str]:
    return [n for n in getattr(exc, "__notes__", []) if n.startswith("ftpipe:")]


class _Attempts:
    """Counts calls per input, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[int] = Counter()

    def __call__(self, x: int) -> int:
        with self._lock:
            self.calls[x] += 1
            return self.calls[x]


def _shapes(attempts: _Attempts, fail: Callable[[int, int], None]) -> dict[str, Any]:
    """The same stage function, once per shape: ``fail(x, attempt)`` may raise."""

    def plain(x: int) -> int:
        fail(x, attempts(x))
        return x

    def gen(x: int) -> Iterator[int]:
        fail(x, attempts(x))
        yield x

    async def coro(x: int) -> int:
        await asyncio.sleep(0)
        fail(x, attempts(x))
        return x

    async def agen(x: int) -> Any:
        await asyncio.sleep(0)
        fail(x, attempts(x))
        yield x

    return {"function": plain, "generator": gen, "async": coro, "async-generator": agen}


SHAPES = [
    ("function", False),
    ("generator", False),
    ("async", False),
    ("async-generator", False),
    ("function", True),
    ("generator", True),
]


def _ids(shape: tuple[str, bool]) -> str:
    return f"{shape[0]}{'-on-executor' if shape[1] else ''}"


def _run(
    fn: Any, on_executor: bool, pool: Executor, **options: Any
) -> tuple[list[int], BaseException | None, ftpipe.StageStats]:
    b = (
        ftpipe.PipelineBuilder()
        .add_source(range(6))
        .pipe(fn, name="s", executor=pool if on_executor else None, **options)
    )
    got: list[int] = []
    error: BaseException | None = None
    with b.build() as pipeline:
        try:
            for x in pipeline:
                got.append(x)
        except BaseException as exc:  # noqa: BLE001 - SystemExit is one
            error = exc
    return got, error, pipeline.stats()["s"]


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_an_exception_is_retried_then_succeeds_on_every_stage_kind(shape):
    kind, on_executor = shape
    attempts = _Attempts()

    def fail(x: int, attempt: int) -> None:
        if x == 3 and attempt <= 2:
            raise ValueError(f"attempt {attempt}")

    fn = _shapes(attempts, fail)[kind]
    with ThreadPoolExecutor(2) as pool:
        got, error, stats = _run(fn, on_executor, pool, retries=2)
    assert error is None and got == list(range(6))
    assert attempts.calls[3] == 3
    assert (stats.retries, stats.failures) == (2, 0)


@pytest.mark.parametrize("shape", SHAPES, ids=_ids)
def test_a_base_exception_is_never_retried_and_names_its_stage_on_every_stage_kind(shape):
    # SystemExit used to leave the async stage's event loop (asyncio re-raises it out
    # of a task) and reach the consumer without the note naming the stage and input.
    kind, on_executor = shape
    attempts = _Attempts()

    def fail(x: int, attempt: int) -> None:
        if x == 2:
            raise SystemExit("a call gave up")

    fn = _shapes(attempts, fail)[kind]
    with ThreadPoolExecutor(2) as pool:
        got, error, stats = _run(fn, on_executor, pool, retries=3, on_error="skip")
    assert isinstance(error, SystemExit), error
    assert any("stage 's'" in n and "input #2" in n for n in _notes(error)), _notes(error)
    assert got == [0, 1]
    assert attempts.calls[2] == 1
    assert (stats.retries, stats.failures) == (0, 1)


def test_a_coroutine_raising_cancelled_error_itself_fails_its_input():
    # The async stage cancels later inputs' calls after a failure; a call that raises
    # CancelledError on its own is no such call, and its input used to vanish silently.
    async def give_up(x: int) -> int:
        if x == 1:
            raise asyncio.CancelledError("the call gave up")
        return x

    with ThreadPoolExecutor(1) as pool:
        got, error, _ = _run(give_up, False, pool)
    assert isinstance(error, asyncio.CancelledError), error
    assert got == [0]


class _Bounded(Executor):
    """An executor that says how many calls it runs at once (it runs none here)."""

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers


def _plan_of(**pipe: Any) -> tuple[Any, int, bool]:
    fn = pipe.pop("fn")
    cfg = ftpipe.PipelineBuilder().add_source([]).pipe(fn, **pipe).config().stages[0]
    plan = worker_plan(cfg)
    return plan.make, plan.count, plan.numbered


def _gen(x: int) -> Iterator[int]:
    yield x


async def _coro(x: int) -> int:
    return x


def test_worker_plan_maps_each_stage_config_to_its_workers():
    assert _plan_of(fn=str, concurrency=3) == (batched_worker, 3, True)
    assert _plan_of(fn=_gen, concurrency=3) == (streamed_worker, 3, True)
    assert _plan_of(fn=_gen, concurrency=3, retries=1) == (collected_worker, 3, True)
    make, count, numbered = _plan_of(fn=_coro, concurrency=3)
    assert (make.__name__, count, numbered) == ("async_worker", 1, False)
    # Executor stages: two submitting threads per worker when the executor bounds them.
    assert _plan_of(fn=str, concurrency=3, executor=_Bounded(3))[1:] == (6, True)
    assert _plan_of(fn=str, concurrency=3, executor=_Bounded(8))[1:] == (3, True)
    assert _plan_of(fn=str, concurrency=3, executor=_Bounded(8))[0].__name__ == "executor_worker"
    config = ftpipe.PipelineBuilder().add_source([]).aggregate(2).disaggregate().config()
    aggregate, disaggregate = (worker_plan(s) for s in config.stages)
    assert (aggregate.make, aggregate.count, aggregate.numbered) == (aggregate_worker, 1, False)
    assert (disaggregate.make, disaggregate.count) == (streamed_worker, 1)


@pytest.mark.parametrize("retries", [0, 1])
def test_busy_time_of_a_generator_stage_means_worker_seconds(retries):
    # As for plain and async functions (test_engine_regressions): 20 inputs of 20 ms
    # at concurrency 4 are 0.4 worker-seconds, streamed (retries=0) or collected.
    def wait(x: int) -> Iterator[int]:
        time.sleep(0.02)
        yield x

    b = ftpipe.PipelineBuilder().add_source(range(20)).pipe(wait, concurrency=4, retries=retries)
    with b.build() as pipeline:
        assert list(pipeline) == list(range(20))
    (stage,) = [s for s in pipeline.stats().stages if s.name != "source"]
    assert 0.4 <= stage.busy_s < 0.4 * 1.5 + 0.1, stage.busy_s
