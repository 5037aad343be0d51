"""ftpipe against torch.utils.data.DataLoader, with the same number of workers.

The workload reads records from a file and decodes each one: a JSON header parsed
and tidied in pure Python (holds the GIL) and a zlib-compressed 3x160x160 image
decompressed and normalised with numpy (mostly releases it); batches of 32.

Loader view (batches/s, median of epochs, ratio against a baseline from the same run):

- 3.11 with torch: DataLoader(num_workers=2, persistent_workers=True) against
  ftpipe's process executor with 2 workers (one batch per call, like the
  DataLoader; and one sample per call), and ftpipe threads (GIL-bound on 3.11).
- 3.13t (no torch there): ftpipe threads with 2 workers, numpy batches.  Its
  baseline in this run is the same loop in one thread; ``--all`` also runs
  3.11 and divides by the DataLoader's batches/s measured in the same command.

Every loader row also gives CPU ms per batch, summed over this process and its
worker processes: on a shared machine batches/s follows the share of the cores the
run gets, CPU per batch does not (it is what the loader costs).

Training-loop view (3.11 with torch): step time of a small MLP fed by each loader,
and by ``ftpipe.torch.CacheLoader`` (replayed batches: the loop with loading removed).

    python benchmarks/vs_dataloader.py [--quick] [--workers 2] [--no-train]
    python benchmarks/vs_dataloader.py --all [--quick]   # 3.11 (torch venv) + 3.13t, one table

``--all`` runs this file under --python311 (default: this interpreter; give a 3.11
virtual environment with torch==2.13.0 and numpy) and --python313t (default: env
FTPIPE_BENCH_PY313T, a 3.13t virtual environment with ftpipe and numpy) and
prints one table.  Timings on a busy machine are noisy: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
SIDE = 160  # stored image side; decoded to a centre crop of CROP
CROP = 128
TAGS = 400
WORDS = 240
BATCH = 32
MEAN = np.float32(0.5)
STD = np.float32(0.25)

# -- the dataset: records in one file, decoded on access ------------------------------------


def write_records(path: Path, n: int) -> None:
    """Write ``n`` records: 4-byte header length, JSON header, zlib-compressed image."""
    rng = np.random.default_rng(0)
    grid = np.add.outer(np.arange(SIDE), np.arange(SIDE))
    offsets = [0]
    with open(path, "wb") as f:
        for i in range(n):
            base = (grid * (i % 7 + 1) % 256).astype(np.uint8)
            noise = rng.integers(0, 16, size=(3, SIDE, SIDE), dtype=np.uint8)
            img = np.stack([base, base.T, 255 - base]) + noise
            header = json.dumps(
                {
                    "id": f"sample-{i:07d}",
                    "label": i % 10,
                    "tags": [f"Tag_{(i * 31 + j) % 997}.Category-{j % 13}" for j in range(TAGS)],
                    "boxes": [[j, 2 * j % SIDE, 5 + j % 9, 7 + j % 5] for j in range(24)],
                    "caption": " ".join(f"Word{(i + j) % 251}," for j in range(WORDS)),
                }
            ).encode()
            blob = len(header).to_bytes(4, "little") + header + zlib.compress(img.tobytes(), 6)
            f.write(blob)
            offsets.append(offsets[-1] + len(blob))
    np.save(str(path) + ".idx.npy", np.asarray(offsets, dtype=np.int64))


def parse_header(raw: bytes) -> dict[str, Any]:
    """The GIL-holding half: JSON and string handling in pure Python."""
    meta = json.loads(raw)
    tags = sorted({t.split(".")[0].lower().replace("_", "-") for t in meta["tags"]})
    categories = [int(t.rsplit("-", 1)[1]) for t in meta["tags"]]
    words = [w.strip(",.").lower() for w in meta["caption"].split()]
    tokens = [sum(map(ord, w)) % 1000 for w in words][:16]
    boxes = [[x / SIDE, y / SIDE, (x + w) / SIDE, (y + h) / SIDE] for x, y, w, h in meta["boxes"]]
    return {
        "label": meta["label"],
        "tokens": tokens + [0] * (16 - len(tokens)),
        "boxes": boxes,
        "n_tags": len(tags) + max(categories),
    }


def decode_image(payload: bytes, flip: bool) -> np.ndarray:
    """The GIL-releasing half: zlib and numpy on a 3xSIDExSIDE image, cropped to CROP."""
    img = np.frombuffer(zlib.decompress(payload), dtype=np.uint8).reshape(3, SIDE, SIDE)
    o = (SIDE - CROP) // 2
    x = np.sqrt(img[:, o : o + CROP, o : o + CROP].astype(np.float32) * np.float32(1 / 255))
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x[:, :, ::-1]) if flip else x


def decode(raw: bytes) -> dict[str, Any]:
    n = int.from_bytes(raw[:4], "little")
    meta = parse_header(raw[4 : 4 + n])
    return {
        "image": decode_image(raw[4 + n :], flip=meta["label"] % 2 == 1),
        "label": np.int64(meta["label"]),
        "tokens": np.asarray(meta["tokens"], dtype=np.int64),
        "boxes": np.asarray(meta["boxes"], dtype=np.float32),
    }


def stack(samples: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """numpy collate (what the loaders share when torch is absent)."""
    return {k: np.stack([s[k] for s in samples]) for k in samples[0]}


class Records:
    """A map-style dataset over the record file; pickles as its path (workers reopen it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._offsets: np.ndarray | None = None

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Every call to a process worker pickles the bound method, hence this
        # object: unpickle to the worker's one open instance, not a new file handle.
        return records, (self.path,)

    def _open(self) -> np.ndarray:
        if self._offsets is None:
            self._offsets = np.load(self.path + ".idx.npy")
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._offsets

    def __len__(self) -> int:
        return len(self._open()) - 1

    def raw(self, i: int) -> bytes:
        offsets = self._open()
        start, end = int(offsets[i]), int(offsets[i + 1])
        assert self._fd is not None
        return os.pread(self._fd, end - start, start)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return decode(self.raw(i))

    def load_batch(self, indices: list[int]) -> dict[str, np.ndarray]:
        return stack([self[i] for i in indices])


_open_records: dict[str, Records] = {}


def records(path: str) -> Records:
    """This process's ``Records`` for ``path`` (opened once per process)."""
    if path not in _open_records:
        _open_records[path] = Records(path)
    return _open_records[path]


# -- loaders: each is a zero-argument function returning an iterable over one epoch ---------


def _torch_collate(samples: list[Any]) -> Any:
    import ftpipe.torch

    return ftpipe.torch.collate(samples)


def _as_tensors(batch: Any) -> Any:
    import ftpipe.torch

    return ftpipe.torch.as_tensors(batch)


def _same(batch: Any) -> Any:
    return batch


def process_batches(ds: Records, indices: list[int], pool: Any, calls: int, workers: int) -> Any:
    """A PipelineLoader handing ``pool`` one batch of indices per call, ``calls`` at a time."""
    import ftpipe
    import ftpipe.torch as ft

    return ft.PipelineLoader(
        ftpipe.PipelineBuilder()
        .add_source(indices)
        .aggregate(BATCH)
        .pipe(ds.load_batch, concurrency=calls, executor=pool)
        .pipe(ft.as_tensors)
        .add_sink(buffer_size=2 * workers)
    )


def make_loaders(
    ds: Records, n: int, workers: int, have_torch: bool
) -> tuple[dict[str, Any], list[Any]]:
    """Return {name: loader} and the resources to close afterwards."""
    import ftpipe

    indices = list(range(n))
    closers: list[Any] = []
    loaders: dict[str, Any] = {}

    def serial() -> Any:
        for start in range(0, n, BATCH):
            yield stack([ds[i] for i in range(start, min(n, start + BATCH))])

    loaders["serial loop (1 thread)"] = serial

    if have_torch:
        import torch.utils.data

        dl = torch.utils.data.DataLoader(
            ds, batch_size=BATCH, num_workers=workers, persistent_workers=True
        )
        loaders[f"DataLoader(num_workers={workers})"] = lambda: dl
        pool = ftpipe.ProcessExecutor(workers, name="vs-dataloader")
        closers.append(pool)
        per_batch = process_batches(ds, indices, pool, workers, workers)
        loaders[f"ftpipe process x{workers}, batch/call"] = lambda: per_batch
        # 2 calls queued per worker process, as the DataLoader's prefetch_factor=2 keeps
        # 2 index batches queued per worker: a worker never waits for the parent to
        # hand it its next batch.
        prefetching = process_batches(ds, indices, pool, 2 * workers, workers)
        loaders[f"ftpipe process x{workers}, batch/call, 2 queued"] = lambda: prefetching
    # The per-sample loader as users write it: decode one sample per call, then
    # aggregate and collate; no restructuring to one call per batch.
    collate = _torch_collate if have_torch else stack
    pool = ftpipe.ProcessExecutor(workers, name="vs-dataloader-samples")
    closers.append(pool)
    per_sample = (
        ftpipe.PipelineBuilder()
        .add_source(indices)
        .pipe(ds.__getitem__, concurrency=workers, executor=pool)
        .aggregate(BATCH)
        .pipe(collate)
        .add_sink(buffer_size=2 * workers)
    )
    # Workers kept across epochs, like persistent_workers=True.
    loaders[f"ftpipe process x{workers}, sample/call"] = lambda: _epoch(per_sample)
    fresh = (
        ftpipe.PipelineBuilder()
        .add_source(indices)
        .pipe(ds.__getitem__, concurrency=workers, executor="process")
        .aggregate(BATCH)
        .pipe(collate)
        .add_sink(buffer_size=2 * workers)
    )
    # executor="process": the pipeline starts its workers every epoch.
    loaders[f"ftpipe process x{workers}, sample/call, new workers"] = lambda: _epoch(fresh)
    threads = (
        ftpipe.PipelineBuilder()
        .add_source(indices)
        .pipe(ds.__getitem__, concurrency=workers)
        .aggregate(BATCH)
        .pipe(collate)
        .add_sink(buffer_size=2 * workers)
    )
    loaders[f"ftpipe threads x{workers}, sample/call"] = lambda: _epoch(threads)
    thread_batches = (
        ftpipe.PipelineBuilder()
        .add_source(indices)
        .aggregate(BATCH)
        .pipe(ds.load_batch, concurrency=workers)
        .pipe(_as_tensors if have_torch else _same)
        .add_sink(buffer_size=2 * workers)
    )
    loaders[f"ftpipe threads x{workers}, batch/call"] = lambda: _epoch(thread_batches)
    return loaders, closers


def _epoch(builder: Any) -> Any:
    with builder.build() as pipeline:
        yield from pipeline


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its live children (worker processes).

    On a shared machine throughput tracks the share of the cores this run gets;
    CPU per batch does not, and it is what a loader costs.
    """
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:  # exited between the listing and the read
            pass
    return total


def time_epoch(loader: Any) -> tuple[float, int, float]:
    """Return (wall seconds, batches, CPU seconds of all processes) for one epoch."""
    cpu = cpu_seconds()
    start = time.perf_counter()
    count = 0
    for _ in loader():
        count += 1
    return time.perf_counter() - start, count, cpu_seconds() - cpu


def measure_loaders(ds: Records, n: int, workers: int, repeats: int) -> dict[str, Any]:
    have_torch = _have_torch()
    loaders, closers = make_loaders(ds, n, workers, have_torch)
    times: dict[str, list[float]] = {name: [] for name in loaders}
    cpus: dict[str, list[float]] = {name: [] for name in loaders}
    batches = 0
    try:
        for loader in loaders.values():  # warm up: start workers, fill caches
            time_epoch(loader)
        for _ in range(repeats):  # round robin, so a noisy moment hits every loader
            for name, loader in loaders.items():
                elapsed, batches, cpu = time_epoch(loader)
                times[name].append(elapsed)
                cpus[name].append(cpu)
    finally:
        for c in closers:
            c.shutdown()
    return {
        name: {
            "batches_per_s": batches / statistics.median(ts),
            "cpu_ms_per_batch": statistics.median(cpus[name]) / batches * 1e3,
            "runs": len(ts),
        }
        for name, ts in times.items()
    }


def measure_parts(ds: Records, samples: int) -> dict[str, float]:
    """Serial ms per sample of each half of decode()."""
    raws = [ds.raw(i) for i in range(samples)]
    heads = [r[4 : 4 + int.from_bytes(r[:4], "little")] for r in raws]
    bodies = [r[4 + int.from_bytes(r[:4], "little") :] for r in raws]

    def best(fn: Any, items: list[bytes]) -> float:
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            for item in items:
                fn(item)
            runs.append((time.perf_counter() - t) / len(items) * 1e3)
        return statistics.median(runs)

    py = best(parse_header, heads)
    native = best(functools.partial(decode_image, flip=True), bodies)
    return {"python_ms": py, "native_ms": native}


# -- training-loop view (torch only) --------------------------------------------------------


def measure_training(ds: Records, n: int, workers: int, repeats: int) -> dict[str, Any]:
    import torch

    import ftpipe
    import ftpipe.torch as ft

    torch.manual_seed(0)
    # About as much compute per step as loading a batch with 2 workers takes.
    model = torch.nn.Sequential(
        torch.nn.AvgPool2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * (CROP // 4) ** 2, 1024),
        torch.nn.ReLU(),
        torch.nn.Linear(1024, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step(batch: Any) -> None:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(batch["image"]), batch["label"])
        loss.backward()
        opt.step()

    pool = ftpipe.ProcessExecutor(workers, name="vs-dataloader-train")
    dl = torch.utils.data.DataLoader(
        ds, batch_size=BATCH, num_workers=workers, persistent_workers=True
    )
    ftp = process_batches(ds, list(range(n)), pool, workers, workers)
    cached = ft.CacheLoader(ftp, 8)
    loaders = {
        f"DataLoader(num_workers={workers})": dl,
        f"ftpipe process x{workers}, batch/call": ftp,
        "headspace: CacheLoader (no loading)": cached,
    }
    times: dict[str, list[float]] = {name: [] for name in loaders}
    try:
        for loader in loaders.values():  # warm-up epoch: workers start, the cache fills
            for batch in loader:
                step(batch)
        for _ in range(repeats):
            for name, loader in loaders.items():
                start = time.perf_counter()
                steps = 0
                for batch in loader:
                    step(batch)
                    steps += 1
                times[name].append((time.perf_counter() - start) / steps * 1e3)
    finally:
        pool.shutdown()
    return {name: {"step_ms": statistics.median(ts)} for name, ts in times.items()}


# -- driver ---------------------------------------------------------------------------------


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _label() -> str:
    import ftpipe

    info = ftpipe.runtime_info(find_others=False)
    name = f"{sys.version_info.major}.{sys.version_info.minor}"
    if info.free_threaded:
        name += "t" + (" GIL=1" if info.gil_enabled else "")
    return name


def run(args: argparse.Namespace) -> dict[str, Any]:
    batches = 16 if args.quick else 48
    repeats = 3 if args.quick else 5
    n = batches * BATCH
    sys.path.insert(0, str(HERE))
    import vs_dataloader as here  # by name: worker processes import it, not __main__

    if _have_torch():
        import torch

        torch.set_num_threads(1)  # one intra-op thread: the 2 cores are for loader workers too
    with tempfile.TemporaryDirectory(prefix="ftpipe-vs-dl-") as tmp:
        path = Path(tmp) / "records.bin"
        here.write_records(path, n)
        ds = here.Records(str(path))
        result: dict[str, Any] = {
            "label": _label(),
            "loadavg": os.getloadavg()[0],
            "torch": _have_torch(),
            "workers": args.workers,
            "batches": batches,
            "parts": here.measure_parts(ds, 64),
            "loaders": here.measure_loaders(ds, n, args.workers, repeats),
        }
        if result["torch"] and not args.no_train:
            result["training"] = here.measure_training(ds, n, args.workers, repeats)
    return result


def print_result(r: dict[str, Any]) -> None:
    parts = r["parts"]
    share = parts["python_ms"] / (parts["python_ms"] + parts["native_ms"])
    print(
        f"Python {r['label']}: {r['batches']} batches of {BATCH} per epoch, {r['workers']} workers; "
        f"decode {parts['python_ms'] + parts['native_ms']:.2f} ms/sample serial "
        f"({share:.0%} GIL-holding pure Python); load average {r['loadavg']:.1f}"
    )
    loaders = r["loaders"]
    base_name = next((k for k in loaders if k.startswith("DataLoader")), "serial loop (1 thread)")
    base = loaders[base_name]["batches_per_s"]
    print(
        f"{'loader':<40}{'batches/s':>10}{'vs ' + base_name.split('(')[0].strip():>18}"
        f"{'CPU ms/batch':>14}"
    )
    for name, row in loaders.items():
        print(
            f"{name:<40}{row['batches_per_s']:>10.1f}{row['batches_per_s'] / base:>17.2f}x"
            f"{row['cpu_ms_per_batch']:>14.1f}"
        )
    if "training" in r:
        tr = r["training"]
        ceiling = tr["headspace: CacheLoader (no loading)"]["step_ms"]
        print(f"\ntraining loop (MLP, batch {BATCH}), median step time")
        print(f"{'fed by':<40}{'ms/step':>10}{'vs headspace':>18}")
        for name, row in tr.items():
            print(f"{name:<40}{row['step_ms']:>10.2f}{row['step_ms'] / ceiling:>17.2f}x")


def run_all(args: argparse.Namespace) -> int:
    """Alternate 3.11 and 3.13t runs for --rounds rounds; ratios within a round, then medians.

    A busy machine slows the two interpreters' runs differently when they are far
    apart in time; dividing within a round keeps each ratio's two figures close.
    """
    src = str(HERE.parent / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rounds: list[list[dict[str, Any]]] = []
    for i in range(args.rounds):
        results = []
        for python in filter(None, (args.python311, args.python313t)):
            cmd = [python, __file__, "--json", "--workers", str(args.workers)]
            cmd += ["--quick"] if args.quick else []
            cmd += ["--no-train"] if args.no_train or i > 0 else []  # training view: round 1
            print(f"round {i + 1}: {' '.join(cmd)}", file=sys.stderr, flush=True)
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
            if out.returncode != 0:
                print(f"{python} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
                return 1
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rounds.append(results)
    for r in rounds[0]:
        print_result(r)
        print()
    dl_name = next((k for k in rounds[0][0]["loaders"] if k.startswith("DataLoader")), None)
    if dl_name is None:
        print("no DataLoader figure (torch missing under --python311?): no cross-interpreter ratio")
        return 1
    loads = ", ".join(f"{r[0]['loadavg']:.1f}" for r in rounds)
    print(
        f"all rounds ({len(rounds)}): batches/s against {dl_name} on {rounds[0][0]['label']} "
        f"in the same round (median over rounds; 1-min load average per round: {loads})"
    )
    print(
        f"{'python':<8}{'loader':<40}{'batches/s':>10}{'vs DataLoader':>15}"
        f"{'per round':>20}{'CPU ms/batch':>14}"
    )
    for j in range(len(rounds[0])):
        for name in rounds[0][j]["loaders"]:
            bps = [r[j]["loaders"][name]["batches_per_s"] for r in rounds]
            ratios = [
                r[j]["loaders"][name]["batches_per_s"] / r[0]["loaders"][dl_name]["batches_per_s"]
                for r in rounds
            ]
            cpu = statistics.median(r[j]["loaders"][name]["cpu_ms_per_batch"] for r in rounds)
            print(
                f"{rounds[0][j]['label']:<8}{name:<40}{statistics.median(bps):>10.1f}"
                f"{statistics.median(ratios):>14.2f}x{'  ' + ' '.join(f'{x:.2f}' for x in ratios):>20}"
                f"{cpu:>14.1f}"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="16 batches per epoch, 3 repeats")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-train", action="store_true", help="skip the training-loop view")
    parser.add_argument("--json", action="store_true", help="print one JSON line (used by --all)")
    parser.add_argument("--all", action="store_true", help="run under 3.11 (torch) and 3.13t")
    parser.add_argument("--rounds", type=int, default=3, help="with --all: alternating rounds")
    parser.add_argument("--python311", default=sys.executable)
    parser.add_argument("--python313t", default=os.environ.get("FTPIPE_BENCH_PY313T", ""))
    args = parser.parse_args(argv)
    if args.all:
        return run_all(args)
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_result(result)
        if not result["torch"]:
            print(
                "\nno torch here: run --all (3.11 with torch + 3.13t) for ratios against the "
                "DataLoader, or divide these batches/s by the DataLoader's from a 3.11 run"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
