"""Any concurrent.futures.Executor plugs into a stage: Dask's, on a real LocalCluster.

The same code runs against a multi-machine cluster: replace the LocalCluster
with ``Client("tcp://scheduler-host:8786")`` (workers started with
``dask worker tcp://scheduler-host:8786`` on each machine, with the stage's
module importable there); ``client.get_executor()`` is then the stage executor.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import ftpipe
import test_executors_workloads as w

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    logging.getLogger("distributed").setLevel(logging.ERROR)
    # ":0": any free port (None still means the default 8787, which may be taken).
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", host="127.0.0.1"
    )
    client = distributed.Client(cluster)
    # Start Dask's own helper threads (e.g. its offload pool) now, so the per-test
    # thread-leak check only sees ours.
    executor = client.get_executor()
    assert list(executor.map(w.square, range(8))) == [x * x for x in range(8)]
    client.run(w.getpid)
    yield client
    client.close()
    cluster.close()


def test_a_stage_runs_on_the_cluster(client: Any) -> None:
    executor = client.get_executor()
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(40))
        .pipe(w.square, concurrency=4, executor=executor, name="on-dask")
        .pipe(w.getpid, concurrency=4, executor=executor, name="where")
        .build()
    )
    with pipeline:
        pids = list(pipeline)
    assert len(pids) == 40
    assert set(pids) <= set(client.run(w.getpid).values())  # ran in the worker processes


def test_errors_carry_the_stage_note(client: Any) -> None:
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source(range(20))
        .pipe(
            functools.partial(w.fail_on, 7),
            concurrency=2,
            executor=client.get_executor(),
            name="dask-stage",
        )
        .build()
    )
    with pipeline, pytest.raises(ValueError, match="bad item 7") as info:
        list(pipeline)
    assert any("dask-stage" in note for note in info.value.__notes__)
