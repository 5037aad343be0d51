"""A toy training script: a decode stage, a featurize stage, batches for a training loop.

python docs/examples/train.py                             # trains
FTPIPE_DIAGNOSTIC_MODE=1 python docs/examples/train.py    # profiles every stage instead
"""

import json
import zlib

import ftpipe


def make_record(i: int) -> bytes:
    """The stored form of one sample: compressed JSON."""
    return zlib.compress(
        json.dumps({"id": i, "values": list(range(i % 50, i % 50 + 200))}).encode()
    )


def decode(blob: bytes) -> dict:
    """Decompress and parse one record (zlib releases the GIL, json does not)."""
    return json.loads(zlib.decompress(blob))


def featurize(record: dict) -> list[float]:
    """Pure-Python feature work: parallel only without the GIL."""
    values = record["values"]
    mean = sum(values) / len(values)
    return [(v - mean) ** 2 for v in values for _ in range(20)][:64]


def main() -> None:
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(make_record(i) for i in range(2_000))
        .pipe(decode, concurrency=2, name="decode")
        .pipe(featurize, concurrency=2, name="featurize")
        .aggregate(32)
        .add_sink(buffer_size=4)
        .build()
    )
    steps = 0
    with pipeline:
        for _batch in pipeline:
            steps += 1  # train_step(batch)
    print(f"{steps} steps")
    print(pipeline.stats())


if __name__ == "__main__":
    main()
