"""ftpipe.torch: collate, to_device, PipelineLoader, CacheLoader, and a real training loop."""

from __future__ import annotations

import functools
import gc
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict, namedtuple
from typing import Any

import numpy as np
import psutil
import pytest

torch = pytest.importorskip("torch")

import ftpipe  # noqa: E402
import ftpipe.torch as ft  # noqa: E402
import test_executors_workloads as w  # noqa: E402

pytestmark = pytest.mark.torch

Pair = namedtuple("Pair", "x y")


# -- module-level stage functions: the process executor imports them by name ---------


def make_sample(i: int) -> tuple[np.ndarray, int]:
    return np.full((3, 4), i, dtype=np.float32), i


def make_batch(indices: list[int]) -> dict[str, np.ndarray]:
    x = np.stack([np.full((2,), i, dtype=np.float32) for i in indices])
    return {"x": x, "i": np.asarray(indices, dtype=np.int64)}


# -- collate ----------------------------------------------------------------------------


def test_collate_numpy_numbers_and_tensors_dtypes_and_shapes() -> None:
    samples = [
        (
            np.full((3, 2), i, dtype=np.uint8),
            i,
            float(i),
            bool(i % 2),
            np.float16(i),
            torch.ones(5) * i,
        )
        for i in range(4)
    ]
    img, ints, floats, bools, halves, tens = ft.collate(samples)
    assert isinstance(img, torch.Tensor) and img.dtype == torch.uint8 and img.shape == (4, 3, 2)
    assert img[:, 0, 0].tolist() == [0, 1, 2, 3]
    assert ints.dtype == torch.int64 and ints.tolist() == [0, 1, 2, 3]
    assert floats.dtype == torch.float64 and floats.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert bools.dtype == torch.bool and bools.tolist() == [False, True, False, True]
    assert halves.dtype == torch.float16 and halves.shape == (4,)
    assert tens.shape == (4, 5) and tens[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_collate_keeps_the_sample_structure() -> None:
    samples = [
        {
            "image": np.zeros((2, 2), np.float32),
            "label": i,
            "name": f"s{i}",
            "pair": Pair(i, [i, -i]),
        }
        for i in range(3)
    ]
    batch = ft.collate(samples)
    assert isinstance(batch, dict) and list(batch) == ["image", "label", "name", "pair"]
    assert batch["image"].shape == (3, 2, 2) and batch["image"].dtype == torch.float32
    assert batch["label"].tolist() == [0, 1, 2]
    assert batch["name"] == ["s0", "s1", "s2"]  # strings stay a list, like default_collate
    assert isinstance(batch["pair"], Pair)
    assert batch["pair"].x.tolist() == [0, 1, 2]
    assert isinstance(batch["pair"].y, list) and batch["pair"].y[1].tolist() == [0, -1, -2]
    ordered = ft.collate([OrderedDict(a=1), OrderedDict(a=2)])
    assert isinstance(ordered, OrderedDict)
    assert isinstance(ft.collate([(1, 2), (3, 4)]), tuple)  # default_collate would give a list


def test_collate_names_the_bad_sample_and_field() -> None:
    samples = [
        {"image": np.zeros((2, 2))},
        {"image": np.zeros((2, 2))},
        {"image": np.zeros((3, 2))},
    ]
    with pytest.raises(ValueError, match=r"samples\[2\]\['image'\] has shape \(3, 2\)"):
        ft.collate(samples)
    with pytest.raises(ValueError, match=r"samples\[1\] has keys \['b'\]"):
        ft.collate([{"a": 1}, {"b": 1}])
    with pytest.raises(ValueError, match="empty"):
        ft.collate([])
    with pytest.raises(TypeError, match="object"):
        ft.collate([np.array([None]), np.array([None])])
    with pytest.raises(TypeError, match="sequence of samples"):
        ft.collate(np.zeros(3))


def test_collate_and_as_tensors_do_not_copy_more_than_stacking() -> None:
    batch = np.arange(12, dtype=np.float32).reshape(3, 4)
    converted = ft.as_tensors({"x": batch, "meta": (batch, "keep")})
    assert np.shares_memory(converted["x"].numpy(), batch)
    assert np.shares_memory(converted["meta"][0].numpy(), batch)
    assert converted["meta"][1] == "keep"
    converted["x"][0, 0] = 100.0  # a view, not a copy: writes show through
    assert batch[0, 0] == 100.0
    # The tensor collate returns views the stacked array (no second copy after np.stack).
    stacked = ft.collate([np.ones(4, np.float32), np.zeros(4, np.float32)])
    assert stacked.numpy().base is not None and stacked.numpy().flags.c_contiguous
    read_only = np.ones(3)
    read_only.flags.writeable = False
    safe = ft.as_tensors(read_only)
    assert not np.shares_memory(safe.numpy(), read_only)  # copied: tensors are writable
    assert ft.as_tensors(np.arange(4)[::-1]).tolist() == [3, 2, 1, 0]  # negative strides


# -- to_device --------------------------------------------------------------------------


def test_to_device_cpu_is_a_no_op_and_pickles() -> None:
    move = ft.to_device("cpu")
    batch = {"x": torch.ones(2), "y": [torch.zeros(1)], "n": 3}
    assert move(batch) is batch
    pinned_request = ft.to_device(torch.device("cpu"), pin_memory=True)
    out = pinned_request(batch)
    if not torch.cuda.is_available():  # pinning needs CUDA: never attempted without it
        assert out is batch
    assert pickle.loads(pickle.dumps(move))(batch) is batch


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_to_device_cuda_without_cuda_says_so() -> None:
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        ft.to_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_to_device_cuda_moves_every_tensor() -> None:
    out = ft.to_device("cuda")({"x": torch.ones(2), "t": (torch.zeros(1), "s")})
    assert out["x"].device.type == "cuda" and out["t"][0].device.type == "cuda"
    assert out["t"][1] == "s"


# -- PipelineLoader ---------------------------------------------------------------------


def _builder(
    epoch: int, n: int = 10, batch: int = 4, drop_last: bool = False
) -> ftpipe.PipelineBuilder:
    order = np.random.default_rng(epoch).permutation(n).tolist()
    return (
        ftpipe.PipelineBuilder()
        .add_source(order)
        .pipe(make_sample, concurrency=2)
        .aggregate(batch, drop_last=drop_last)
        .pipe(ft.collate)
        .add_sink(buffer_size=2)
    )


def test_loader_rebuilds_per_epoch_and_follows_set_epoch() -> None:
    loader = ft.PipelineLoader(_builder)
    assert len(loader) == 3 and loader.batch_size == 4
    first = [y.tolist() for _, y in loader]
    again = [y.tolist() for _, y in loader]  # no set_epoch: same epoch, same order
    assert first == again
    loader.set_epoch(1)
    assert loader.epoch == 1
    other = [y.tolist() for _, y in loader]
    assert other != first
    for epoch_batches in (first, other):
        assert sorted(sum(epoch_batches, [])) == list(range(10))  # every sample once per epoch
        assert [len(b) for b in epoch_batches] == [4, 4, 2]
    x, y = next(iter(ft.PipelineLoader(_builder)))
    assert x.shape == (4, 3, 4) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_loader_len_follows_aggregate_and_drop_last() -> None:
    assert len(ft.PipelineLoader(functools.partial(_builder, n=10, drop_last=True))) == 2
    assert len(ft.PipelineLoader(functools.partial(_builder, n=12, drop_last=True))) == 3
    assert len(ft.PipelineLoader(functools.partial(_builder, n=13, batch=1))) == 13
    loader = ft.PipelineLoader(functools.partial(_builder, n=10, drop_last=True))
    assert sum(1 for _ in loader) == len(loader)
    # A source without len(), or a stage that changes the count: len() says why.
    streaming = ftpipe.PipelineBuilder().add_source(iter(range(3)))
    with pytest.raises(TypeError, match="source .* has no len"):
        len(ft.PipelineLoader(lambda: streaming))
    assert len(ft.PipelineLoader(lambda: streaming, length=7)) == 7

    def twice(x: int) -> Any:
        yield x
        yield x

    gen = ftpipe.PipelineBuilder().add_source(range(3)).pipe(twice)
    with pytest.raises(TypeError, match="generator"):
        len(ft.PipelineLoader(gen))


def test_loader_from_a_builder_and_refusals() -> None:
    builder = ftpipe.PipelineBuilder().add_source(range(5)).aggregate(2).pipe(ft.collate)
    loader = ft.PipelineLoader(builder)
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3], [4]]
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3], [4]]  # re-iterable source
    with pytest.raises(TypeError, match="one-shot iterator"):
        ft.PipelineLoader(ftpipe.PipelineBuilder().add_source(iter(range(3))))
    with pytest.raises(TypeError, match="PipelineBuilder or a function"):
        ft.PipelineLoader(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a PipelineBuilder"):
        iter(ft.PipelineLoader(lambda: [1, 2]))  # type: ignore[arg-type, return-value]


def test_factory_runs_once_per_epoch_even_with_len_first() -> None:
    calls: list[int] = []

    def factory(epoch: int) -> ftpipe.PipelineBuilder:
        calls.append(epoch)
        # A one-shot source: a second builder call per epoch would be the only safe way.
        return ftpipe.PipelineBuilder().add_source(iter(range(3 + epoch)))

    loader = ft.PipelineLoader(factory, length=3)
    assert len(loader) == 3 and loader.batch_size is None
    assert list(loader) == [0, 1, 2]
    loader.set_epoch(1)
    assert list(loader) == [0, 1, 2, 3]
    assert calls == [0, 1]


def test_loader_forwards_set_epoch_to_the_source() -> None:
    class Sampler:
        def __init__(self) -> None:
            self.epochs: list[int] = []

        def set_epoch(self, epoch: int) -> None:
            self.epochs.append(epoch)

        def __iter__(self) -> Any:
            return iter(range(4))

        def __len__(self) -> int:
            return 4

    sampler = Sampler()
    loader = ft.PipelineLoader(ftpipe.PipelineBuilder().add_source(sampler).aggregate(2))
    loader.set_epoch(5)
    assert list(loader) == [[0, 1], [2, 3]]
    assert sampler.epochs == [5]


def test_breaking_out_stops_the_pipeline() -> None:
    before = threading.active_count()
    loader = ft.PipelineLoader(functools.partial(_builder, n=200, batch=2))
    with iter(loader) as batches:
        next(batches)
    assert threading.active_count() <= before  # close() joined every stage thread
    for _ in loader:  # the plain `break` path: the leak check fixture joins the rest
        break


def test_loader_with_process_stage_and_in_subprocess() -> None:
    def build() -> ftpipe.PipelineBuilder:
        return (
            ftpipe.PipelineBuilder()
            .add_source(range(10))
            .aggregate(4)
            .pipe(make_batch, concurrency=2, executor="process")
            .pipe(ft.as_tensors)
        )

    batches = list(ft.PipelineLoader(build))
    assert [b["i"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batches[2]["x"].shape == (2, 2) and batches[2]["x"].dtype == torch.float32

    # The whole pipeline in a child process; collate to tensors in the parent.
    sub = ftpipe.PipelineBuilder().add_source(range(10)).aggregate(4).pipe(make_batch)
    loader = ft.PipelineLoader(sub, in_subprocess=True)
    assert len(loader) == 3
    got = [ft.as_tensors(b) for b in loader]
    assert [b["i"].tolist() for b in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


# -- persistent workers -------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(pids: set[int], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _segments(prefix: str) -> list[str]:
    return [e for e in os.listdir("/dev/shm") if e.startswith(prefix)]


def _pid_builder(epoch: int = 0, n: int = 24) -> ftpipe.PipelineBuilder:
    return (
        ftpipe.PipelineBuilder()
        .add_source(list(range(n)))
        .pipe(w.slow_with_pid, executor="process", concurrency=2, name="load")
        .aggregate(4)
    )


def _run_epoch(loader: Any) -> tuple[list[int], set[int]]:
    """One epoch: the items in order, and the pids of the processes that made them."""
    batches = list(loader)
    return [x for b in batches for x, _ in b], {p for b in batches for _, p in b}


@pytest.mark.timeout(120)
def test_persistent_workers_serve_every_epoch_and_close_leaves_nothing() -> None:
    loader = ft.PipelineLoader(_pid_builder)  # persistent_workers=True is the default
    try:
        out1, pids1 = _run_epoch(loader)
        pool = loader._pools.pools()["load"]  # type: ignore[union-attr]
        out2, pids2 = _run_epoch(loader)
        assert pids1 == pids2 == set(pool.worker_pids()) and len(pids1) == 2
    finally:
        loader.close()
    assert _gone(pids1) and not _segments(pool.shm_prefix)
    plain = ft.PipelineLoader(_pid_builder, persistent_workers=False)
    out3, pids3 = _run_epoch(plain)
    out4, pids4 = _run_epoch(plain)
    assert pids3.isdisjoint(pids4) and _gone(pids3 | pids4)  # new workers every epoch
    assert out1 == out2 == out3 == out4 == list(range(24))
    # Iterating after close() starts new workers.
    try:
        out5, pids5 = _run_epoch(loader)
        assert out5 == out1 and pids5.isdisjoint(pids1)
    finally:
        loader.close()


@pytest.mark.timeout(120)
def test_persistent_workers_after_a_break_give_the_whole_next_epoch() -> None:
    loader = ft.PipelineLoader(functools.partial(_pid_builder, n=400))
    try:
        for i, _ in enumerate(loader):
            if i == 2:
                break
        out, pids = _run_epoch(loader)  # the abandoned epoch's queued calls were cancelled
        assert out == list(range(400))
        with iter(loader) as batches:
            next(batches)
        out, again = _run_epoch(loader)
        assert out == list(range(400)) and again == pids
    finally:
        loader.close()


@pytest.mark.timeout(120)
def test_persistent_workers_give_the_same_errors() -> None:
    def picky(epoch: int) -> ftpipe.PipelineBuilder:
        return (
            ftpipe.PipelineBuilder()
            .add_source(range(10))
            .pipe(functools.partial(w.fail_on, 5), executor="process", name="picky")
        )

    def outcome(loader: Any) -> tuple[list[int], str, list[str]]:
        got: list[int] = []
        with pytest.raises(ValueError, match="bad item 5") as info:
            for x in loader:
                got.append(x)
        return got, str(info.value), getattr(info.value, "__notes__", [])

    expected = outcome(ft.PipelineLoader(picky, persistent_workers=False))
    assert expected[0] == [0, 1, 2, 3, 4] and any("picky" in n for n in expected[2])
    with ft.PipelineLoader(picky) as loader:
        assert outcome(loader) == expected
        assert outcome(loader) == expected  # the pool that raised serves the next epoch


@pytest.mark.timeout(120)
def test_persistent_workers_a_killed_worker_is_replaced_and_close_is_prompt(tmp_path) -> None:  # type: ignore[no-untyped-def]
    loader = ft.PipelineLoader(_pid_builder)
    try:
        _, pids = _run_epoch(loader)
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while psutil.pid_exists(victim) and time.monotonic() < deadline:
            time.sleep(0.02)  # reaped by the fork server, which then tells the pool
        time.sleep(0.1)
        out, after = _run_epoch(loader)
        assert out == list(range(24)) and victim not in after
    finally:
        loader.close()

    def stuck(epoch: int) -> ftpipe.PipelineBuilder:
        jobs = [(str(tmp_path), 60.0)] * 4
        builder = ftpipe.PipelineBuilder().add_source(jobs)
        return builder.pipe(w.mark_then_sleep, executor="process", concurrency=2, name="load")

    loader = ft.PipelineLoader(stuck)
    batches = iter(loader)
    busy = set(w.wait_for_marks(str(tmp_path), 2))
    start = time.monotonic()
    loader.close()  # mid-epoch, calls of a minute running
    assert time.monotonic() - start < 5.0
    assert _gone(busy)
    with pytest.raises(StopIteration):
        next(batches)


@pytest.mark.timeout(120)
def test_persistent_workers_outlive_a_dropped_loader_until_its_epoch_is_done() -> None:
    batches = iter(ft.PipelineLoader(_pid_builder))  # the loader is garbage at once
    gc.collect()
    got = [b for b in batches]
    assert [x for b in got for x, _ in b] == list(range(24))
    pids = {p for b in got for _, p in b}
    del batches, got
    gc.collect()
    assert _gone(pids)  # collecting the loader (and its last epoch) stopped them


@pytest.mark.timeout(120)
def test_persistent_workers_in_subprocess_keep_one_child() -> None:
    loader = ft.PipelineLoader(_pid_builder, in_subprocess=True, buffer_size=2)
    try:
        out1, pids1 = _run_epoch(loader)
        child = loader._child.pid  # type: ignore[union-attr]
        prefix = loader._child.shm_prefix  # type: ignore[union-attr]
        for i, _ in enumerate(loader):
            if i == 1:
                break  # stops that epoch's pipeline in the child, not the child
        out2, pids2 = _run_epoch(loader)
        assert loader._child.pid == child and _alive(child)  # type: ignore[union-attr]
        assert out1 == out2 == list(range(24)) and pids1 == pids2 and len(pids1) == 2
    finally:
        loader.close()
    assert _gone({child, *pids1})
    assert not _segments(prefix) and not _segments(f"ftpipe-{child}-")

    plain = ft.PipelineLoader(_pid_builder, in_subprocess=True, persistent_workers=False)
    children = []
    for _ in range(2):
        epoch = iter(plain)
        children.append(epoch._pipeline.pid)
        assert [x for b in epoch for x, _ in b] == list(range(24))
    assert children[0] != children[1] and _gone(set(children))


# -- a real training loop -----------------------------------------------------------------

TRUE_W = np.array([2.0, -3.0, 0.5], dtype=np.float32)


def regression_sample(i: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(i).standard_normal(3).astype(np.float32)
    return x, np.array([x @ TRUE_W + 1.0], dtype=np.float32)


def _regression(epoch: int) -> ftpipe.PipelineBuilder:
    order = np.random.default_rng(epoch).permutation(256).tolist()
    return (
        ftpipe.PipelineBuilder()
        .add_source(order)
        .pipe(regression_sample, concurrency=2)
        .aggregate(32, drop_last=True)
        .pipe(ft.collate)
        .pipe(ft.to_device("cpu"))
        .add_sink(buffer_size=4)
    )


def _train(loader: Any, epochs: int) -> list[float]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        total = 0.0
        for x, y in loader:
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total / len(loader))
    return losses


def test_training_loop_lowers_the_loss() -> None:
    losses = _train(ft.PipelineLoader(_regression), epochs=4)
    assert losses[-1] < 0.05 * losses[0], losses
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses


# -- CacheLoader (headspace) --------------------------------------------------------------


class CountingLoader:
    """A loader that counts the batches it produced and the iterators it handed out."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.produced = 0
        self.iterations = 0
        self.closed = 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Any:
        self.iterations += 1
        try:
            for i in range(self.n):
                self.produced += 1
                yield torch.full((2,), float(i))
        finally:
            self.closed += 1


def test_cache_loader_replays_the_first_batches() -> None:
    inner = CountingLoader(10)
    cache = ft.CacheLoader(inner, 3)
    assert len(cache) == 10 and cache.cached == 0 and not cache.complete
    first = [int(b[0]) for b in cache]
    assert first == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert inner.produced == 3 and inner.closed == 1  # the loader stopped after 3 batches
    assert cache.complete and cache.cached == 3
    second = list(cache)
    assert [int(b[0]) for b in second] == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert inner.iterations == 1  # later epochs never touch the loader
    assert second[0] is second[3]  # the same objects, replayed


def test_cache_loader_steps_short_loaders_and_abandoned_epochs() -> None:
    short = ft.CacheLoader(CountingLoader(2), 5, steps=7)
    assert [int(b[0]) for b in short] == [0, 1, 0, 1, 0, 1, 0]
    inner = CountingLoader(10)
    cache = ft.CacheLoader(inner, 4, steps=6)
    for _ in cache:
        break  # abandoned before the cache filled: nothing half-kept
    assert not cache.complete
    assert [int(b[0]) for b in cache] == [0, 1, 2, 3, 0, 1]
    with pytest.raises(TypeError, match="steps="):
        ft.CacheLoader(iter([1]), 2)
    with pytest.raises(ValueError, match="num_batches"):
        ft.CacheLoader([1], 0)
    with pytest.raises(TypeError, match="num_batches"):
        ft.CacheLoader([1], 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        ft.CacheLoader([1], 1, steps=0)
    with pytest.raises(TypeError, match="steps"):
        ft.CacheLoader([1], 1, steps="3")  # type: ignore[arg-type]


def test_cache_loader_over_a_pipeline_trains_and_stops_the_pipeline() -> None:
    loader = ft.CacheLoader(ft.PipelineLoader(_regression), 2)
    assert len(loader) == 8
    losses = _train(loader, epochs=3)  # fits the 2 cached batches
    assert losses[-1] < losses[0]


# -- laziness ---------------------------------------------------------------------------


def test_import_ftpipe_never_imports_torch_and_missing_torch_is_explained() -> None:
    code = (
        "import sys, ftpipe\n"
        "assert 'torch' not in sys.modules, 'import ftpipe imported torch'\n"
        "sys.modules['torch'] = None  # as if torch were not installed\n"
        "try:\n"
        "    import ftpipe.torch\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'ftpipe[torch]'" in out.stdout


# -- item seeds and initializers through the loader ------------------------------------


def _seeded_builder() -> ftpipe.PipelineBuilder:
    import context_workloads as cw

    return (
        ftpipe.PipelineBuilder(seed=11)
        .add_source(range(12))
        .pipe(cw.seeded, concurrency=2, executor="process", name="aug")
        .pipe(
            cw.inits_here,
            name="where",
            executor="process",
            initializer=cw.record_init,
            initargs=("loader",),
        )
        .aggregate(4)
    )


@pytest.mark.timeout(120)
def test_loader_epochs_give_new_seeds_and_persistent_workers_initialize_once() -> None:
    loader = ft.PipelineLoader(_seeded_builder)
    try:
        epochs = []
        for epoch in (0, 1, 0):
            loader.set_epoch(epoch)
            epochs.append([row for batch in loader for row in batch])
    finally:
        loader.close()
    seeds = [[pair for pair, *_ in rows] for rows in epochs]
    assert seeds[0] == seeds[2] and seeds[0] != seeds[1]
    assert [x for x, _ in seeds[1]] == list(range(12))
    # The "where" stage's one worker process was kept across the three epochs and ran
    # its initializer once, as worker 0 of its stage.
    inits = {len(inits) for rows in epochs for *_, inits in rows}
    assert inits == {1}
    assert {info for rows in epochs for _, info, _, _ in rows} == {ftpipe.WorkerInfo("where", 0, 1)}


# -- checkpoints: state_dict() / load_state_dict() ---------------------------------------


def ckpt_sample(i: int) -> tuple[int, int]:
    return i, ftpipe.item_seed() % 1000


def _ckpt_builder(epoch: int) -> ftpipe.PipelineBuilder:
    order = np.random.default_rng(epoch).permutation(30).tolist()
    return (
        ftpipe.PipelineBuilder(seed=11)
        .add_source(order)
        .pipe(ckpt_sample, concurrency=3)
        .aggregate(4)
        .pipe(ft.collate)
    )


def _ckpt_lists(batch: Any) -> list[Any]:
    return [t.tolist() for t in batch]


def _train_until(
    loader: ft.PipelineLoader, epochs: range, stop: tuple[int, int] | None = None
) -> tuple[list[Any], dict[str, Any] | None]:
    """A training loop over ``epochs``; checkpoints and stops after batch ``stop`` = (epoch, n)."""
    seen = []
    for epoch in epochs:
        loader.set_epoch(epoch)
        for n, batch in enumerate(loader):
            seen.append((epoch, _ckpt_lists(batch)))
            if stop == (epoch, n):
                return seen, pickle.loads(pickle.dumps(loader.state_dict()))
        if stop == (epoch, None):
            return seen, pickle.loads(pickle.dumps(loader.state_dict()))
    return seen, None


STOPS = [(0, 0), (0, 3), (0, 7), (0, None), (1, 5)]


@pytest.mark.parametrize(
    ("persistent", "in_subprocess", "stop"),
    [(p, False, stop) for p in (True, False) for stop in STOPS]
    # In a child that runs ahead of the loop: the checkpoint is the one of the last
    # batch the loop took, which the child sends along with it.
    + [(True, True, stop) for stop in STOPS[1:]]
    + [(False, True, (1, 2))],
)
def test_loader_resumed_mid_epoch_sees_the_batches_of_one_that_ran_through(
    persistent: bool, in_subprocess: bool, stop: tuple[int, int | None]
) -> None:
    kw = {"persistent_workers": persistent, "in_subprocess": in_subprocess, "buffer_size": 3}
    with ft.PipelineLoader(_ckpt_builder, **kw) as loader:
        full, _ = _train_until(loader, range(2))
    assert len(full) == 16  # 30 samples in batches of 4, twice
    with ft.PipelineLoader(_ckpt_builder, **kw) as loader:
        head, state = _train_until(loader, range(2), stop)  # type: ignore[arg-type]
    assert state is not None and state["epoch"] == stop[0]
    assert (state["pipeline"] is None) == (stop[1] is None)
    # The resumed loop starts at the checkpoint's epoch, or the next one after a whole epoch.
    first = state["epoch"] + (1 if stop[1] is None else 0)
    with ft.PipelineLoader(_ckpt_builder, **kw) as loader:
        loader.load_state_dict(state)
        assert loader.epoch == stop[0]
        tail, _ = _train_until(loader, range(first, 2))
    assert head + tail == full


def test_loader_state_dict_between_epochs_and_refusals() -> None:
    loader = ft.PipelineLoader(_ckpt_builder)
    assert loader.state_dict() == {"version": 1, "epoch": 0, "pipeline": None}
    with pytest.raises(TypeError, match="PipelineLoader.state_dict"):
        loader.load_state_dict({"consumed": 3})
    loader.close()
    gen = ft.PipelineLoader(
        lambda: ftpipe.PipelineBuilder().add_source(iter(range(8))).aggregate(2), length=4
    )
    with gen:
        it = iter(gen)
        next(it)
        with pytest.raises(ValueError, match="not a sequence"):
            gen.state_dict()
    sub = ft.PipelineLoader(
        lambda: ftpipe.PipelineBuilder().add_source(iter(range(8))).aggregate(2),
        length=4,
        in_subprocess=True,
    )
    with sub:
        it = iter(sub)
        next(it)
        with pytest.raises(ValueError, match="not a sequence"):
            sub.state_dict()


def test_a_loaded_checkpoint_for_another_epoch_is_dropped_with_a_warning() -> None:
    with ft.PipelineLoader(_ckpt_builder) as loader:
        _, state = _train_until(loader, range(1), (0, 2))
    assert state is not None and state["pipeline"] is not None
    with ft.PipelineLoader(_ckpt_builder) as loader:
        loader.load_state_dict(state)
        loader.set_epoch(1)
        with pytest.warns(RuntimeWarning, match="checkpoint is for epoch 0, this iter\\(\\) is 1"):
            batches = list(loader)
    assert len(batches) == 8  # epoch 1 from its beginning
