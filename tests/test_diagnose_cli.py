"""``python -m ftpipe.diagnose._cli`` (what ``python -m ftpipe diagnose`` calls)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from ftpipe.diagnose._cli import main

TESTS = str(Path(__file__).parent)


def _cli(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "ftpipe.diagnose._cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=110,
        cwd=cwd,
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_json_to_stdout_alone_and_html(tmp_path: Path) -> None:
    html = tmp_path / "r.html"
    proc = _cli(
        "diagnose_workloads:sleepy",
        "--inputs",
        "diagnose_workloads:sleepy_inputs",
        "--concurrency",
        "1,2",
        "--quick",
        "--json",
        "-",
        "--html",
        str(html),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)  # stdout is the JSON document alone
    assert (
        doc["verdict"] in ("scales", "inconclusive")
        and doc["function"] == "diagnose_workloads:sleepy"
    )
    assert "verdict" in proc.stderr and "report:" in proc.stderr  # the table went to stderr
    assert html.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.timeout(120)
def test_pickle_inputs_and_json_file(tmp_path: Path) -> None:
    pkl = tmp_path / "items.pkl"
    pkl.write_bytes(pickle.dumps([0.001] * 4))
    out = tmp_path / "d.json"
    proc = _cli(
        "diagnose_workloads:sleepy",
        "--inputs",
        str(pkl),
        "--concurrency",
        "2",
        "--quick",
        "--json",
        str(out),
        "--in-process",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert [p["concurrency"] for p in doc["curves"][0]["points"]] == [1, 2]
    assert "diagnose_workloads:sleepy" in proc.stdout  # the table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nodots", "--inputs", "x:y"], "must look like MODULE:NAME"),
        (["no_such_module_xyz:f", "--inputs", "x:y"], "cannot import module 'no_such_module_xyz'"),
        (["json:nope", "--inputs", "x:y"], "has no attribute 'nope'"),
        (["json:dumps", "--inputs", "/nonexistent/items.pkl"], "cannot read pickle file"),
        (["json:dumps", "--inputs", "builtins:list", "--quick"], "gave no items"),
        (["json:dumps", "--inputs", "json:__name__"], "is a str, not a list of items"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_bad_concurrency_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["json:dumps", "--inputs", "x:y", "--concurrency", "1,two"])
    assert info.value.code == 2 and "--concurrency wants numbers" in capsys.readouterr().err
