"""Tests for ``python -m ftpipe``: doctor's table and JSON, and delegation to sub-commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import pytest

import ftpipe
from ftpipe import __main__ as cli

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
RUNTIME_FIELDS = {
    "implementation",
    "version",
    "executable",
    "free_threaded",
    "gil_enabled",
    "gil_reenabled_by",
    "gil_summary",
    "usable_cores",
    "cpu_count",
    "subinterpreters",
    "optional_packages",
    "interpreters",
}


def run_cli(*args: str, gil: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    if gil is not None:
        env["PYTHON_GIL"] = gil
    return subprocess.run(
        [sys.executable, "-m", "ftpipe", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_doctor_json_has_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == RUNTIME_FIELDS
    assert data["free_threaded"] is FREE_THREADED
    assert data["version"] == ".".join(map(str, sys.version_info[:3]))
    assert isinstance(data["gil_reenabled_by"], list)
    assert set(data["optional_packages"]) == {"numpy", "torch", "distributed", "matplotlib"}
    assert data["interpreters"], "this interpreter at least"
    for interp in data["interpreters"]:
        assert set(interp) == {"path", "version", "free_threaded", "label"}
    assert os.path.realpath(sys.executable) in [i["path"] for i in data["interpreters"]]


def test_doctor_table_leads_with_the_gil_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--no-interpreters"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == ftpipe.runtime_info(find_others=False).gil_summary
    for label in ("python", "free-threaded build", "GIL enabled now", "usable cores", "numpy"):
        assert any(line.strip().startswith(label) for line in lines), label
    assert "interpreters on this machine" not in out
    # Aligned: every value starts in the same column.
    rows = [line for line in lines[2:] if line.startswith("  ")]
    columns = {len(row) - len(row[2:].split("  ", 1)[1].lstrip()) for row in rows}
    assert len(columns) == 1, rows


def test_doctor_table_lists_other_interpreters(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "interpreters on this machine" in out
    assert os.path.realpath(sys.executable) in out


@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded build")
def test_doctor_on_free_threaded_build_says_gil_disabled() -> None:
    result = run_cli("doctor", "--no-interpreters", gil=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "free-threaded build, GIL disabled"


@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded build")
def test_doctor_says_when_the_gil_is_forced_on() -> None:
    result = run_cli("doctor", "--json", "--no-interpreters", gil="1")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["gil_enabled"] is True
    assert data["gil_summary"] == "free-threaded build, GIL forced on (PYTHON_GIL=1 or -X gil=1)"


@pytest.mark.skipif(FREE_THREADED, reason="GIL builds only")
def test_doctor_on_gil_build_says_so() -> None:
    result = run_cli("doctor", "--no-interpreters", gil=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "GIL build: the GIL is always enabled"


def test_delegated_commands_get_their_arguments_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 7

    module = types.ModuleType("ftpipe_fake_demo")
    module.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ftpipe_fake_demo", module)
    monkeypatch.setitem(cli._DELEGATES, "demo", ("ftpipe_fake_demo", "fake"))
    assert cli.main(["demo", "--quick", "--help", "x"]) == 7
    assert seen == [["--quick", "--help", "x"]]


def test_missing_subcommand_module_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli._DELEGATES, "diagnose", ("ftpipe._no_such_module", "missing"))
    assert cli.main(["diagnose", "m:f"]) == 2
    err = capsys.readouterr().err
    assert "'diagnose' is not available" in err
    assert "ftpipe._no_such_module" in err


def test_missing_dependency_inside_a_subcommand_is_not_hidden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "ftpipe_fake_cli.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli._DELEGATES, "demo", ("ftpipe_fake_cli", "fake"))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        cli.main(["demo"])


def test_unknown_command_exits_with_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_python_dash_m_ftpipe_runs() -> None:
    result = run_cli("--version", gil=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ftpipe {ftpipe.__version__}"
