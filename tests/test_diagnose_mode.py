"""Diagnostic mode: FTPIPE_DIAGNOSTIC_MODE=1 turns build() into a profiler, run as a real script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

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
        items, error = _run_stage(stage, items)
        assert error == ""
    assert items == [[[0, 0], [1, 1], [2, 2]], [[3, 3], [4, 4], [5, 5]], [[6, 6], [7, 7], [8, 8]]]
