"""``PipelineBuilder(seed=, epoch=)`` and ``ftpipe.item_seed()``: one seed per item, everywhere.

An item's seed depends on the pipeline's seed, the epoch, the stage's name and
the item's position in the stage's input, never on concurrency, executor or timing.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from hashlib import blake2b
from typing import Any

import pytest

import context_workloads as cw
import ftpipe
from ftpipe.executors import subinterpreters_available

needs_subinterpreters = pytest.mark.skipif(
    not subinterpreters_available(), reason="isolated subinterpreters need CPython 3.13+"
)

N = 200


def _run(builder: ftpipe.PipelineBuilder) -> list[Any]:
    with builder.build() as pipeline:
        return list(pipeline)


def _seeds(fn: Any = cw.seeded, *, seed: int = 7, epoch: int = 0, **pipe: Any) -> list[Any]:
    pipe.setdefault("name", "aug")
    return _run(
        ftpipe.PipelineBuilder(seed=seed, epoch=epoch).add_source(range(N)).pipe(fn, **pipe)
    )


def _expected(seed: int, epoch: int, stage: str, position: int) -> int:
    """The documented derivation, written out independently of the engine."""
    key = blake2b(f"ftpipe/{seed}/{epoch}/{stage}".encode(), digest_size=16).digest()
    digest = blake2b(position.to_bytes(8, "little"), key=key, digest_size=8).digest()
    return int.from_bytes(digest, "little")


def test_seeds_follow_the_documented_derivation() -> None:
    out = _seeds(seed=7, epoch=2)
    assert out == [(x, _expected(7, 2, "aug", x)) for x in range(N)]
    assert len({s for _, s in out}) == N  # one per item


@pytest.mark.parametrize(
    "pipe",
    [
        pytest.param({"concurrency": 8}, id="threads-8"),
        pytest.param({"concurrency": 8, "ordered": False}, id="threads-8-unordered"),
        pytest.param({"concurrency": 2, "executor": "process"}, id="process-2"),
        pytest.param(
            {"concurrency": 2, "executor": "interpreter"},
            id="interpreter-2",
            marks=needs_subinterpreters,
        ),
    ],
)
def test_augmentation_is_the_same_at_any_concurrency_and_on_any_executor(
    pipe: dict[str, Any],
) -> None:
    reference = _seeds(cw.augment, concurrency=1)
    assert sorted(_seeds(cw.augment, **pipe)) == reference


def test_seeds_are_the_same_on_a_users_executor_and_on_async_stages() -> None:
    reference = _seeds(concurrency=1)
    with ThreadPoolExecutor(3) as ex:
        assert _seeds(concurrency=3, executor=ex) == reference
    assert [(x, s) for x, s, _ in _seeds(cw.async_seeded, concurrency=4)] == reference


def test_seeds_differ_by_seed_epoch_and_stage() -> None:
    base = _seeds(seed=7, epoch=0)
    assert _seeds(seed=7, epoch=0) == base
    assert set(_seeds(seed=8, epoch=0)).isdisjoint(base)
    assert set(_seeds(seed=7, epoch=1)).isdisjoint(base)
    assert set(_seeds(seed=7, epoch=0, name="other")).isdisjoint(base)
    # Two stages running the same function get different seeds for the same item.
    two = _run(
        ftpipe.PipelineBuilder(seed=7)
        .add_source(range(N))
        .pipe(cw.seeded, name="a")
        .pipe(lambda pair: (pair, ftpipe.item_seed()), name="b")
    )
    assert all(first[1] != second for first, second in two)


def test_set_epoch_changes_the_seeds_as_epoch_does() -> None:
    b = ftpipe.PipelineBuilder(seed=7).add_source(range(N)).pipe(cw.seeded, name="aug")
    assert _run(b.set_epoch(3)) == _seeds(seed=7, epoch=3)


@pytest.mark.thread_unsafe  # counts attempts in module state
def test_a_retried_item_keeps_its_seed() -> None:
    with cw._lock:
        cw._attempts.clear()
    retried = _seeds(cw.flaky_seeded, concurrency=4, retries=1)
    assert retried == _seeds(concurrency=1)


def test_positions_after_a_generator_stage_are_the_same_at_any_concurrency() -> None:
    def build(concurrency: int) -> list[Any]:
        return _run(
            ftpipe.PipelineBuilder(seed=1)
            .add_source(range(N))
            .pipe(cw.odd_only, concurrency=concurrency, name="split")
            .pipe(cw.seeded, concurrency=concurrency, name="aug")
        )

    reference = build(1)
    assert [x for x, _ in reference][:4] == [1, -1, 3, -3]
    assert build(6) == reference


def test_without_a_seed_item_seed_names_what_to_set() -> None:
    with pytest.raises(RuntimeError, match=r"PipelineBuilder\(seed="):
        _run(ftpipe.PipelineBuilder().add_source(range(3)).pipe(cw.seeded))


def test_without_a_seed_item_seed_names_what_to_set_in_a_worker_process() -> None:
    with pytest.raises(RuntimeError, match=r"PipelineBuilder\(seed="):
        _run(ftpipe.PipelineBuilder().add_source(range(3)).pipe(cw.seeded, executor="process"))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seed": "1"}, TypeError, "seed must be an int >= 0"),
        ({"seed": True}, TypeError, "seed must be an int >= 0"),
        ({"seed": 1.5}, TypeError, "seed must be an int >= 0"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"seed": 1, "epoch": "0"}, TypeError, "epoch must be an int"),
    ],
)
def test_seed_and_epoch_are_validated(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ftpipe.PipelineBuilder(**kwargs)


def test_the_config_carries_the_seed_and_epoch() -> None:
    config = ftpipe.PipelineBuilder(seed=5, epoch=2).add_source(range(3)).pipe(cw.seeded).config()
    assert (config.seed, config.epoch) == (5, 2)
    assert ftpipe.PipelineBuilder().add_source(range(3)).config().seed is None
