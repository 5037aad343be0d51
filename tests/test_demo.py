"""``python -m ftpipe demo``: configurations, the table, the report, and one real short run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ftpipe
from ftpipe._demo import _interpreters, _model, _pipeline, _report, _runner, _table, _workloads
from ftpipe._demo._progress import Progress
from ftpipe._demo._report import write_report
from ftpipe._runtime import InterpreterInfo, is_free_threaded
from ftpipe.diagnose import Configuration, Curve, Diagnosis, ExecutorAdvice, Point, Verdict

# Examples count threads and the demo tests patch module globals: one thread at a time.
pytestmark = pytest.mark.thread_unsafe

FT = Configuration("3.13t", "no-gil", "/x/python3.13t", "3.13.5", True, None)
FT_GIL = Configuration("3.13t gil=1", "gil", "/x/python3.13t", "3.13.5", True, 1)
STOCK = Configuration("3.13 GIL", "gil-build", "/x/python3.13", "3.13.0", False, None)


def _point(c: int, rate: float) -> Point:
    return Point(c, rate, 0.001 * c, 0.001, float(c), 0.0, 0.02, 3, 100, 50.0)


def _curve(config: Configuration, rates: list[float], *, numpy: bool = False) -> Curve:
    points = tuple(_point(c, r) for c, r in zip((1, 2, 4), rates, strict=True))
    return Curve(
        config.label,
        config.role,
        config.executable,
        config.version,
        config.free_threaded,
        config.gil != 0 and not (config.free_threaded and config.gil is None),
        points=points,
        uses_numpy=numpy,
    )


def _diagnosis(verdict: Verdict, curves: tuple[Curve, ...], title: str) -> Diagnosis:
    return Diagnosis(
        function="ftpipe._demo._workloads:x",
        stage=title,
        verdict=verdict,
        explanation=f"because {verdict.value}",
        curves=curves,
        best_concurrency=2,
        recommended_executor=ExecutorAdvice("thread", "thread"),
        usable_cores=2,
        interpreter="3.13t",
    )


def _result(pipelines: dict | None = None) -> _model.DemoResult:
    loop, add = _workloads.WORKLOADS[0], _workloads.WORKLOADS[1]
    rows = (
        _model.Row(
            loop,
            _diagnosis(
                Verdict.GIL_BOUND,
                (
                    _curve(FT, [100, 190, 195]),
                    _curve(FT_GIL, [100, 101, 99]),
                    _curve(STOCK, [120, 118, 119]),
                ),
                loop.title,
            ),
            {},
        ),
        _model.Row(
            add,
            _diagnosis(
                Verdict.INCONCLUSIVE,
                (_curve(FT, [100, 150, 150], numpy=True), _curve(FT_GIL, [100, 140, 150])),
                add.title,
            ),
            {"3.13 GIL": "no numpy"},
        ),
    )
    return _model.DemoResult(
        (FT, FT_GIL, STOCK), rows, pipelines or {}, cores=2, seconds=12.0, quick=True
    )


def test_table_has_a_speedup_per_configuration_and_the_verdict() -> None:
    rows = _table.table_rows(_result())
    assert rows[0] == [
        "workload",
        "3.13t",
        "3.13t gil=1",
        "3.13 GIL",
        "verdict",
        "best",
        "executor 3.13t / GIL build",
    ]
    loop = rows[1]
    assert loop[1:4] == ["1.90x", "1.01x", "0.98x"]
    assert loop[4] == "gil-bound"
    # On 3.13t the detector advises threads; on a GIL build pure Python needs
    # subinterpreters (numpy work would need processes).
    if is_free_threaded():
        assert loop[6] == "thread / interpreter"
    add = rows[2]
    assert add[3] == "no numpy"
    # An inconclusive verdict is not a recommendation: best in parentheses, no executor.
    assert add[4:] == ["inconclusive", "(2)", "-"]


def test_text_output_names_the_ideal_and_explains_inconclusive_rows() -> None:
    text = _table.format_result(_result())
    assert "Speedup of 2 threads over 1" in text
    assert "2.00x is perfect" in text
    assert "1 inconclusive" in text


def test_pipeline_rows_show_speedups_startup_and_errors() -> None:
    pipelines = {
        "3.13t": {
            "items": 96,
            "serial_s": 0.5,
            "kinds": {
                "thread": {"speedup": 1.9, "startup_s": 0.01, "seconds": 0.26},
                "interpreter": {"error": "no subinterpreters on this Python (3.13+ needed)"},
                "process": {"speedup": 1.7, "startup_s": 0.8, "seconds": 0.29},
            },
        },
        "3.11 GIL": {"error": "did not finish within 60 s"},
    }
    rows = _table.pipeline_rows(_result(pipelines))
    assert rows[1] == [
        "3.13t",
        "192 items/s",
        "1.90x (start 0.0 s)",
        "n/a (no subinterpreters)",
        "1.70x (start 0.8 s)",
    ]
    assert rows[2][1] == "error: did not finish within 60 s"


@pytest.mark.parametrize("plots", [True, False], ids=["matplotlib", "no-matplotlib"])
def test_report_is_one_self_contained_page_with_a_section_per_workload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plots: bool
) -> None:
    # Either way the page is whole: with matplotlib a plot per workload, without it
    # the tables and a note saying how to get the plots (and never both).
    svg = (lambda d: f"<svg data-stage='{d.stage}'></svg>") if plots else (lambda d: None)
    monkeypatch.setattr(_report, "svg_plot", svg)
    page = write_report(_result(), tmp_path / "demo.html")
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org", "")
    for workload in _workloads.WORKLOADS[:2]:
        assert f"<section id={workload.key}>" in text
    assert text.count("<table>") == 2  # the battery and the configurations
    assert "Not measured on 3.13 GIL: numpy is not installed there" in text
    if plots:
        assert text.count("<svg") == 2 and "pip install 'ftpipe[report]'" not in text
    else:
        assert "<svg" not in text and "pip install 'ftpipe[report]'" in text


def test_report_plots_come_from_matplotlib_when_it_is_installed(tmp_path: Path) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        installed = False
    else:
        installed = True
    text = write_report(_result(), tmp_path / "demo.html").read_text(encoding="utf-8")
    assert ("<svg" in text) is installed
    assert ("pip install 'ftpipe[report]'" in text) is not installed


def test_json_document_round_trips(tmp_path: Path) -> None:
    data = json.loads(json.dumps(_table.to_dict(_result())))
    assert data["table"][1][4] == "gil-bound"
    assert Diagnosis.from_dict(data["workloads"][0]["diagnosis"]).verdict is Verdict.GIL_BOUND
    assert data["workloads"][1]["skipped"] == {"3.13 GIL": "no numpy"}


def test_configurations_pair_free_threaded_modes_and_list_stock_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = (
        InterpreterInfo("/opt/py/python3.13t", "3.13.5", True),
        InterpreterInfo("/opt/py/python3.11", "3.11.7", False),
        InterpreterInfo("/opt/py/python3.13", "3.13.0", False),
        InterpreterInfo("/opt/py/python3.12", "3.12.1", False),
    )
    monkeypatch.setattr(_interpreters, "find_interpreters", lambda: found)
    labels = [c.label for c in _interpreters.configurations()]
    here = f"{sys.version_info.major}.{sys.version_info.minor}" + (
        "t" if is_free_threaded() else ""
    )
    assert labels[:2] == ["3.13t", "3.13t gil=1"]
    # Stock builds: the free-threaded build's own minor version first, then newest first.
    stock = [label for label in labels if label.endswith(" GIL")]
    assert stock[0] == "3.13 GIL"
    assert len(stock) == len({*stock})
    assert f"{here} GIL" in labels or here == "3.13t"
    quick = [c.label for c in _interpreters.configurations(quick=True)]
    quick_stock = [label for label in quick if label.endswith(" GIL")]
    expected = ["3.13 GIL"] if is_free_threaded() or here == "3.13" else ["3.13 GIL", f"{here} GIL"]
    assert quick_stock == expected


def test_without_a_free_threaded_python_the_demo_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_interpreters, "find_interpreters", lambda: ())
    monkeypatch.setattr(_interpreters, "is_free_threaded", lambda: False)
    monkeypatch.setattr(_interpreters, "_version", lambda: "3.11.7")
    configs = _interpreters.configurations()
    assert [c.role for c in configs] == ["gil-build"]
    result = _runner.run_demo(workloads=[], pipelines=False, progress=Progress(sys.stderr))
    assert _interpreters.NO_FREE_THREADED in result.notes
    assert "tools/find-pythons.sh" in _table.format_result(result)


def test_numpy_workloads_are_skipped_where_numpy_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_runner, "has_numpy", lambda executable: False)
    add = _workloads.WORKLOADS[1]
    row = _runner._diagnose_row(add, [FT, STOCK], quick=True, progress=Progress(sys.stderr))
    assert row.diagnosis is None
    assert row.skipped == {"3.13t": "no numpy", "3.13 GIL": "no numpy"}
    assert "numpy is not installed" in row.error


def test_has_numpy_asks_the_interpreter_itself() -> None:
    try:
        import numpy  # noqa: F401
    except ImportError:
        expected = False
    else:
        expected = True
    assert _interpreters.has_numpy(sys.executable) is expected
    assert _interpreters.has_numpy("/nonexistent/python") is False


def test_demo_children_get_ftpipe_alone_on_their_path() -> None:
    """The demo put ftpipe's parent directory on its other interpreters' PYTHONPATH.

    Once ftpipe is installed that parent is site-packages: ``has_numpy`` on 3.11 found
    the 3.13t venv's numpy (and its runs imported it) instead of 3.11's own.
    """
    first = Path(_interpreters.child_env()["PYTHONPATH"].split(os.pathsep)[0])
    assert os.listdir(first) == ["ftpipe"], first
    assert (first / "ftpipe").resolve() == Path(ftpipe.__file__).resolve().parent


def test_workloads_compute_and_name_themselves() -> None:
    # i * i % 7 repeats every 7 values of i: 0, 1, 4, 2, 2, 4, 1 (sum 14).
    n = _workloads.LOOP_N
    assert _workloads.pure_python(1) == 1 + 14 * (n // 7) + sum([0, 1, 4, 2, 2, 4, 1][: n % 7])
    assert _workloads.write_file(3) == _workloads.FILE_BYTES
    assert _workloads.wait_io(5) == 5
    keys = [w.key for w in _workloads.WORKLOADS]
    assert keys == ["pure-python", "numpy-add", "numpy-dot", "write-file", "wait-io"]
    for w in _workloads.WORKLOADS:
        # Probes and executors find them by module and name.
        assert w.fn.__module__ == "ftpipe._demo._workloads"
        assert getattr(_workloads, w.fn.__name__) is w.fn


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_pipeline_comparison_runs_every_executor_kind() -> None:
    data = _pipeline.pipeline_timings(quick=True)
    assert data["items"] == _pipeline.PIPE_ITEMS // 2
    for kind in ("thread", "process"):
        cell = data["kinds"][kind]
        assert "error" not in cell, cell
        assert cell["speedup"] > 0 and cell["startup_s"] >= 0
    interp = data["kinds"]["interpreter"]
    if sys.version_info < (3, 13):
        assert "no subinterpreters" in interp["error"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_demo_command_runs_end_to_end(tmp_path: Path) -> None:
    """The real command, on the real interpreters found, kept short."""
    out = tmp_path / "report"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ftpipe",
            "demo",
            "--quick",
            "--workloads",
            "wait-io",
            "--no-pipeline",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wait on I/O (5 ms)" in done.stdout
    assert "report: " in done.stdout
    assert (out / "demo.html").is_file()
    data = json.loads((out / "demo.json").read_text())
    diagnosis = data["workloads"][0]["diagnosis"]
    assert diagnosis is not None
    # Waiting scales on every build; a busy machine may make it inconclusive, never wrong.
    assert diagnosis["verdict"] in ("scales", "inconclusive")
    assert "[1/1] wait on I/O" in done.stderr  # progress goes to stderr


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium package")
@pytest.mark.timeout(120)
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    """The page parses into the DOM a reader sees: both tables, every section, no errors."""
    page = write_report(_result(), tmp_path / "demo.html")
    done = subprocess.run(
        [
            str(_chromium()),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "<h1>Threads, subinterpreters or processes?</h1>" in dom
    assert dom.count("<table>") == 2
    assert dom.count("<section") == 2
    assert 'class="verdict">gil-bound</span>' in dom
    assert "Not measured on 3.13 GIL: numpy is not installed there" in dom
