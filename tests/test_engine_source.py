"""The source thread (_engine/_source.py): chunks, errors, and async sources that wait."""

from __future__ import annotations

import asyncio
import threading

import pytest

import ftpipe


def _notes(exc: BaseException) -> list[str]:
    return [n for n in getattr(exc, "__notes__", []) if n.startswith("ftpipe:")]


def _drain(builder: ftpipe.PipelineBuilder) -> tuple[list[int], BaseException | None]:
    got: list[int] = []
    error: BaseException | None = None
    try:
        with builder.build() as pipeline:
            for x in pipeline:
                got.append(x)
    except Exception as exc:  # noqa: BLE001 - returned for the test to look at
        error = exc
    return got, error


def _yield_then_fail(n: int):
    yield from range(n)
    raise ValueError(f"source fails after {n}")


async def _async_yield_then_fail(n: int):
    for i in range(n):
        if i % 3 == 0:
            await asyncio.sleep(0)
        yield i
    raise ValueError(f"source fails after {n}")


@pytest.mark.parametrize("n", [1, 2, 5, 40, 300])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_every_item_before_a_source_error_reaches_the_consumer(kind: str, n: int) -> None:
    """Items a source yielded before failing were lost with the chunk being read.

    _workers.py ``start_source``: ``list(islice(iterator, take))`` read a chunk of up
    to 32 items, and an error inside it dropped the whole chunk (40 items: the
    consumer got 31).  An async source was collected 64 items at a time, so one
    failing after 40 delivered nothing at all.
    """
    source = _yield_then_fail(n) if kind == "sync" else _async_yield_then_fail(n)
    got, error = _drain(ftpipe.PipelineBuilder().add_source(source).pipe(int, concurrency=2))
    assert got == list(range(n))
    assert isinstance(error, ValueError) and str(error) == f"source fails after {n}"
    assert _notes(error) == ["ftpipe: raised by the source"]


def test_an_async_source_hands_items_on_while_it_waits() -> None:
    """A slow async source delivered nothing until 64 items had arrived.

    ``_drain_async`` (_workers.py) gathered 64 items before the first put, so a
    source that yields a few items and then waits (for the network, for the
    consumer) kept them from the consumer for as long as it waited.
    """
    consumer_has_five = threading.Event()

    async def source():
        for i in range(5):
            yield i
        # Waits for the consumer to see the first five (up to 10 s, then says it did not).
        yield await asyncio.to_thread(consumer_has_five.wait, 10)

    pipeline = ftpipe.PipelineBuilder().add_source(source()).pipe(int).build()
    with pipeline:
        first = [next(pipeline) for _ in range(5)]
        consumer_has_five.set()
        rest = list(pipeline)
    assert first == [0, 1, 2, 3, 4]
    assert rest == [1], "the source waited 10 s for items it had already yielded"


def test_an_async_source_is_read_in_chunks_while_it_is_fast() -> None:
    """A fast async source still fills the channel in batches (one put per item would crawl)."""

    async def source():
        for i in range(5000):
            yield i

    pipeline = ftpipe.PipelineBuilder().add_source(source()).add_sink(buffer_size=64).build()
    with pipeline:
        assert list(pipeline) == list(range(5000))
    assert pipeline.stats()["source"].items_out == 5000


def test_an_async_source_stops_when_the_pipeline_closes() -> None:
    """Closing while an endless async source runs stops its thread and closes the generator."""
    finalized = threading.Event()

    async def endless():
        i = 0
        try:
            while True:
                yield i
                i += 1
                if i % 100 == 0:
                    await asyncio.sleep(0)
        finally:
            finalized.set()

    pipeline = ftpipe.PipelineBuilder().add_source(endless()).add_sink(buffer_size=4).build()
    with pipeline:
        assert [next(pipeline) for _ in range(1000)] == list(range(1000))
    assert finalized.wait(5), "the async source was never closed"


def test_an_async_source_raising_cancelled_error_is_an_error_not_a_hang() -> None:
    """A source's own CancelledError reaches the consumer after its items; nothing waits forever."""

    async def source():
        for i in range(3):
            yield i
        raise asyncio.CancelledError("the source gave up")

    got: list[int] = []
    finished = threading.Event()
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            got.extend(ftpipe.PipelineBuilder().add_source(source()).build())
        except BaseException as exc:  # noqa: BLE001 - CancelledError is one
            errors.append(exc)
        finally:
            finished.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    assert finished.wait(10), "the consumer hung on a source that raised CancelledError"
    assert got == [0, 1, 2]
    assert len(errors) == 1 and isinstance(errors[0], asyncio.CancelledError)
    assert _notes(errors[0]) == ["ftpipe: raised by the source"]
