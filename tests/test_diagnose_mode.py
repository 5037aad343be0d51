"""Diagnostic mode: FTPIPE_DIAGNOSTIC_MODE=1 turns build() into a profiler, run as a real script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import ftpipe
from ftpipe.diagnose import DiagnosticProfiler

SCRIPT = textwrap.dedent(
    """
    import json
    import ftpipe

    def parse(x):
        return json.loads(json.dumps({"x": x, "pad": list(range(30))}))["x"]

    def total(batch):
        return sum(batch)

    {guard}
        pipeline = (
            ftpipe.PipelineBuilder()
            .add_source(range(10_000))
            .pipe(parse, concurrency=2)
            .pipe(lambda v: v + 1)
            .aggregate(4)
            .pipe(total)
            .add_sink()
            .build()
        )
        with pipeline:
            for _ in pipeline:
                pass
        print("TRAINED")
    """
)


def _run(tmp_path: Path, guarded: bool = True) -> tuple[subprocess.CompletedProcess[str], Path]:
    guard = 'if __name__ == "__main__":' if guarded else "if True:"
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.replace("{guard}", guard))
    out = tmp_path / "report"
    env = {
        **os.environ,
        "FTPIPE_DIAGNOSTIC_MODE": "1",
        "FTPIPE_DIAGNOSTIC_ITEMS": "64",
        "FTPIPE_DIAGNOSTIC_DIR": str(out),
        "FTPIPE_DIAGNOSTIC_QUICK": "1",
        "FTPIPE_DIAGNOSTIC_CONCURRENCY": "1,2",
    }
    env.pop("PYTHON_GIL", None)
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    return proc, out


@pytest.mark.slow
@pytest.mark.timeout(170)
def test_diagnostic_mode_profiles_every_stage_and_exits_1(tmp_path: Path) -> None:
    proc, out = _run(tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "TRAINED" not in proc.stdout  # the training loop never ran
    assert f"ftpipe diagnostic report: {out / 'report.html'}" in proc.stdout
    assert "0:parse" in proc.stdout and "verdict" in proc.stdout  # the summary table
    report = json.loads((out / "report.json").read_text())
    stages = [d["stage"] for d in report["diagnoses"]]
    assert stages == ["0:parse", "1:<lambda>", "3:total"]
    parse, lam, total = report["diagnoses"]
    # parse and total live in the script: the probes import it as __mp_main__.
    assert parse["function"] == "__main__:parse"
    assert all(c["status"] == "ok" for c in parse["curves"] if c["role"] != "gil-build"), parse[
        "curves"
    ]
    assert any(c["role"] == "no-gil" or c["role"] == "gil-build" for c in parse["curves"])
    # The lambda cannot cross to another interpreter: in-process only, and the report says why.
    assert [c["role"] for c in lam["curves"]] == ["in-process"]
    assert any("lambda" in n for n in lam["notes"]) and lam["limited"]
    # total received the aggregated lists of 4: 64 items -> 16 lists.
    assert all(p["items"] > 0 for c in total["curves"] if c["status"] == "ok" for p in c["points"])
    html = (out / "report.html").read_text()
    assert html.count("<section>") == 3


@pytest.mark.slow
@pytest.mark.timeout(170)
def test_unguarded_script_is_not_rerun_by_the_probes(tmp_path: Path) -> None:
    proc, out = _run(tmp_path, guarded=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "TRAINED" not in proc.stdout
    parse = json.loads((out / "report.json").read_text())["diagnoses"][0]
    probes = [c for c in parse["curves"] if c["role"] != "in-process"]
    assert probes and all(c["status"] == "import-error" for c in probes)
    assert all(
        '__name__ == \\"__main__\\"' in c["message"] or "__name__" in c["message"] for c in probes
    )
    # ... and it was still measured here, so the report has an answer.
    assert parse["curves"][-1]["role"] == "in-process" and parse["curves"][-1]["status"] == "ok"


def test_build_returns_the_profiler_only_in_diagnostic_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builder = ftpipe.PipelineBuilder().add_source([1, 2, 3]).pipe(str)
    monkeypatch.setenv("FTPIPE_DIAGNOSTIC_MODE", "1")
    monkeypatch.setenv("FTPIPE_DIAGNOSTIC_ITEMS", "2")
    profiler = builder.build()
    assert isinstance(profiler, DiagnosticProfiler)
    assert profiler.items == 2 and profiler.config.stages[0].fn is str
    monkeypatch.setenv("FTPIPE_DIAGNOSTIC_MODE", "0")
    assert not isinstance(builder.build(), DiagnosticProfiler)


def test_stage_outputs_feed_the_next_stage() -> None:
    from ftpipe.diagnose._diagnostic_mode import _run_stage

    config = (
        ftpipe.PipelineBuilder()
        .add_source(range(10))
        .aggregate(4)
        .disaggregate()
        .pipe(lambda x: [x, x], name="dup")
        .aggregate(3, drop_last=True)
        .config()
    )
    items = list(range(10))
    for stage in config.stages:
        run = _run_stage(stage, items)
        assert run.error == "" and run.done == len(items)
        items = run.outputs
    assert items == [[[0, 0], [1, 1], [2, 2]], [[3, 3], [4, 4], [5, 5]], [[6, 6], [7, 7], [8, 8]]]


def _seeded(x: int) -> tuple[int, int, str | None]:
    info = ftpipe.worker_info()
    return x, ftpipe.item_seed(), None if info is None else info.stage


def test_a_stage_that_seeds_itself_is_profiled_with_the_pipelines_seeds() -> None:
    """Diagnostic mode called stage functions outside any stage: item_seed() raised
    ("only available inside a stage call"), so the stage and every later one went
    unprofiled, although the pipeline itself ran."""
    from ftpipe.diagnose._diagnostic_mode import _run_stage

    builder = ftpipe.PipelineBuilder(seed=7, epoch=2).add_source(range(6))
    builder = builder.pipe(_seeded, name="augment").add_sink()
    run = _run_stage(builder.config().stages[0], list(range(6)))
    assert run.error == "" and run.done == 6
    with builder.build() as pipeline:
        assert run.outputs == list(pipeline)  # the same seeds, and worker_info() names it
    with pytest.raises(RuntimeError, match="only available inside a stage call"):
        ftpipe.item_seed()  # the profiling thread is itself again


class _FakeDiagnose:
    """Stands in for ``diagnose``: records what each stage was diagnosed on."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Any]]] = []

    def __call__(self, fn: Any, inputs: Any, **kwargs: Any) -> str:
        self.calls.append((kwargs["stage"], list(inputs)))
        return kwargs["stage"]


def _profile(
    monkeypatch: pytest.MonkeyPatch, builder: ftpipe.PipelineBuilder, **env: str
) -> tuple[_FakeDiagnose, list[str]]:
    fake = _FakeDiagnose()
    # By module object: the name ftpipe.diagnose is the function, not the package.
    monkeypatch.setattr(sys.modules["ftpipe.diagnose._api"], "diagnose", fake)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    results, notes = DiagnosticProfiler(builder.config()).profile()
    assert results == [stage for stage, _ in fake.calls]
    return fake, notes


@pytest.mark.thread_unsafe(reason="replaces diagnose() in its module for the whole process")
def test_a_slow_stage_runs_on_fewer_items_within_its_time_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Making the next stage's inputs had no time bound: every cached item, serially.

    With the default 200 items, a stage taking 2 s a call ran 400 s before anything
    was measured (hours for a few such stages).  Now each stage runs for at most
    FTPIPE_DIAGNOSTIC_PASS_SECONDS (plus the call in progress) and the report says
    how many items it got through.
    """
    calls = []

    def slow(x: int) -> int:
        calls.append(x)
        time.sleep(0.1)
        return x * 10

    builder = (
        ftpipe.PipelineBuilder()
        .add_source(range(100))
        .pipe(slow, name="slow")
        .pipe(str, name="fast")
    )
    started = time.monotonic()
    fake, notes = _profile(monkeypatch, builder, FTPIPE_DIAGNOSTIC_PASS_SECONDS="0.5")
    assert time.monotonic() - started < 5
    ran = len(calls)
    assert 1 <= ran < 20, ran  # 0.5 s of 0.1 s calls, not 100 calls
    (stage1, inputs1), (stage2, inputs2) = fake.calls
    assert stage1 == "slow" and inputs1 == list(range(ran))
    assert stage2 == "fast" and inputs2 == [10 * x for x in range(ran)]
    (note,) = notes
    assert note.startswith("slow: calls take about") and f"on {ran} of its 100" in note


@pytest.mark.thread_unsafe(reason="replaces diagnose() in its module for the whole process")
def test_a_stage_that_raises_is_diagnosed_on_the_inputs_before_the_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def picky(x: int) -> int:
        if x == 4:
            raise ValueError("four")
        return x

    builder = ftpipe.PipelineBuilder().add_source(range(10)).pipe(picky, name="picky").pipe(str)
    fake, notes = _profile(monkeypatch, builder)
    # The sweep stops at the first call that raises: only inputs that succeeded go in.
    assert fake.calls == [("picky", [0, 1, 2, 3])]
    assert notes == [
        "picky: raised ValueError: four on cached input #4; diagnosed on the 4 inputs "
        "before it; later stages not profiled"
    ]

    skipping = (
        ftpipe.PipelineBuilder()
        .add_source(range(10))
        .pipe(picky, name="skips", on_error="skip")
        .pipe(str, name="after")
    )
    fake, notes = _profile(monkeypatch, skipping)
    kept = [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert fake.calls == [("skips", kept), ("after", kept)]
    assert notes == [
        "skips: 1 of 10 inputs raised and were skipped (on_error='skip'); "
        "it was diagnosed on the others"
    ]


@pytest.mark.thread_unsafe(
    reason="reads the process-wide diagnostic-mode settings other tests set in the environment"
)
def test_generator_and_async_stages_are_profiled_for_real() -> None:
    """Generator, async and async generator stages: run, fed forward and diagnosed."""
    import asyncio

    def twice(x: int) -> Any:
        yield x
        yield x

    async def plus_one(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    async def and_negated(x: int) -> Any:
        yield x
        await asyncio.sleep(0)
        yield -x

    config = (
        ftpipe.PipelineBuilder()
        .add_source(range(6))
        .pipe(twice, name="gen")
        .pipe(plus_one, name="async")
        .pipe(and_negated, name="agen")
        .config()
    )
    env = {"FTPIPE_DIAGNOSTIC_QUICK": "1", "FTPIPE_DIAGNOSTIC_CONCURRENCY": "1,2"}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        profiler = DiagnosticProfiler(config)
    results, notes = profiler.profile()
    assert notes == []
    assert [d.stage for d in results] == ["gen", "async", "agen"]
    for d in results:
        # Closures: measured in this process, at both levels, with every call succeeding.
        (curve,) = d.curves
        assert curve.status == "ok", (d.stage, curve.message)
        assert [p.concurrency for p in curve.points] == [1, 2]
        assert all(p.items > 0 for p in curve.points)


STATS_AND_CLOSE = textwrap.dedent(
    """
    import ftpipe

    if __name__ == "__main__":
        pipeline = (
            ftpipe.PipelineBuilder()
            .add_source(range(1000))
            .pipe(lambda x: x * 2, name="double")
            .add_sink()
            .build()
        )
        print("stats before:", len(pipeline.stats().stages))
        pipeline.start()
        try:
            first = next(pipeline)
            for batch in pipeline:
                pass
        finally:
            pipeline.close()
            print("closed")
        print("TRAINED")
    """
)


@pytest.mark.timeout(120)
def test_a_script_calling_start_next_stats_and_close_is_profiled(tmp_path: Path) -> None:
    """A script using the pipeline's other methods died with an AttributeError.

    The profiler had only ``with`` and ``for``: ``stats()``, ``start()``, ``next()``
    and ``close()`` (in a ``finally``) raised before (or instead of) profiling.
    """
    script = tmp_path / "train.py"
    script.write_text(STATS_AND_CLOSE)
    out = tmp_path / "report"
    env = {
        **os.environ,
        "FTPIPE_DIAGNOSTIC_MODE": "1",
        "FTPIPE_DIAGNOSTIC_ITEMS": "32",
        "FTPIPE_DIAGNOSTIC_DIR": str(out),
        "FTPIPE_DIAGNOSTIC_QUICK": "1",
        "FTPIPE_DIAGNOSTIC_CONCURRENCY": "1,2",
    }
    env.pop("PYTHON_GIL", None)
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "stats before: 0" in proc.stdout and "closed" in proc.stdout
    assert "TRAINED" not in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert [d["stage"] for d in report["diagnoses"]] == ["double"]
