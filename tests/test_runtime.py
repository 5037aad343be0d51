"""Tests for ftpipe._runtime: the interpreter facts everything else relies on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from pathlib import Path

import pytest

import ftpipe
from ftpipe import _runtime as runtime

FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
needs_free_threaded = pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded build")

# CPython 3.13t's exact text (Python/import.c), with a made-up module name.
GIL_WARNING = (
    "The global interpreter lock (GIL) has been enabled to load module 'fakemod', which has "
    "not declared that it can run safely without the GIL. To override this behavior and keep "
    "the GIL disabled (at your own risk), run with PYTHON_GIL=0 or -Xgil=0."
)


def run_python(code: str, *flags: str, env: dict[str, str | None] | None = None) -> str:
    """Run ``code`` in a fresh interpreter like this one and return its stdout.

    ``env`` entries are added to this process's environment; None removes one.
    """
    child_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            child_env.pop(key, None)
        else:
            child_env[key] = value
    result = subprocess.run(
        [sys.executable, *flags, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_is_free_threaded_reads_the_build_config() -> None:
    assert runtime.is_free_threaded() is FREE_THREADED


def test_gil_enabled_matches_the_interpreter() -> None:
    if FREE_THREADED:
        assert runtime.gil_enabled() is sys._is_gil_enabled()
    else:
        assert runtime.gil_enabled() is True


def test_usable_cores_follows_the_affinity_mask() -> None:
    cores = runtime.usable_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert cores == len(os.sched_getaffinity(0))


def test_interpreter_label_marks_free_threaded_builds() -> None:
    assert runtime.InterpreterInfo("/x/python3.13t", "3.13.5", True).label == "3.13t"
    assert runtime.InterpreterInfo("/x/python3.12", "3.12.1", False).label == "3.12"


def test_find_interpreters_includes_this_one_once_each() -> None:
    found = runtime.find_interpreters()
    this = os.path.realpath(sys.executable)
    assert this in [i.path for i in found]
    assert len({i.path for i in found}) == len(found)
    me = next(i for i in found if i.path == this)
    assert me.free_threaded is FREE_THREADED
    assert me.version == ".".join(map(str, sys.version_info[:3]))


@pytest.mark.thread_unsafe(reason="refresh replaces the process-wide cache other threads read")
def test_find_interpreters_is_cached_until_refreshed() -> None:
    found = runtime.find_interpreters()
    assert runtime.find_interpreters() is found
    again = runtime.find_interpreters(refresh=True)
    assert again == found
    assert runtime.find_interpreters() is again


def test_runtime_info_describes_this_process() -> None:
    info = ftpipe.runtime_info(find_others=False)
    assert info.implementation == sys.implementation.name
    assert info.version == ".".join(map(str, sys.version_info[:3]))
    assert info.executable == sys.executable
    assert info.free_threaded is FREE_THREADED
    assert info.gil_enabled is runtime.gil_enabled()
    assert info.usable_cores == runtime.usable_cores()
    assert set(info.optional_packages) == {"numpy", "torch", "distributed", "matplotlib"}
    assert info.optional_packages["numpy"] is True  # a test dependency
    assert info.interpreters == ()
    json.dumps(info.to_dict())  # JSON-ready as it is


def test_subinterpreters_need_313_or_later() -> None:
    info = ftpipe.runtime_info(find_others=False)
    if sys.version_info < (3, 13):
        assert info.subinterpreters is False
    elif sys.implementation.name == "cpython":
        assert info.subinterpreters is True


@pytest.mark.skipif(FREE_THREADED, reason="GIL builds only")
def test_gil_build_summary_and_no_watch() -> None:
    # On a GIL build the warning cannot happen, and nothing pretends it did.
    out = run_python(
        f"""
        import warnings, ftpipe, ftpipe._runtime as rt
        warnings.warn({GIL_WARNING!r}, RuntimeWarning)
        print(rt.gil_reenabled_by(), ftpipe.runtime_info(find_others=False).gil_summary)
        """,
        "-W",
        "ignore",
    )
    assert out.strip() == "() GIL build: the GIL is always enabled"


@needs_free_threaded
def test_gil_reenabled_by_reads_cpythons_warning() -> None:
    out = run_python(
        f"""
        import warnings, ftpipe._runtime as rt
        warnings.warn({GIL_WARNING!r}, RuntimeWarning)
        print(rt.gil_reenabled_by())
        """
    )
    assert out.strip() == "('fakemod',)"


@needs_free_threaded
@pytest.mark.parametrize(
    ("flags", "gil_env", "expected"),
    [
        ((), "1", "free-threaded build, GIL forced on (PYTHON_GIL=1 or -X gil=1)"),
        (("-Xgil=1",), None, "free-threaded build, GIL forced on (PYTHON_GIL=1 or -X gil=1)"),
        ((), "0", "free-threaded build, GIL disabled"),
        ((), None, "free-threaded build, GIL disabled"),
    ],
)
def test_gil_summary_says_how_the_gil_was_set(
    flags: tuple[str, ...], gil_env: str | None, expected: str
) -> None:
    out = run_python(
        "import ftpipe; print(ftpipe.runtime_info(find_others=False).gil_summary)",
        *flags,
        env={"PYTHON_GIL": gil_env},
    )
    assert out.strip() == expected


def _build_extension_without_ft_support(directory: Path) -> None:
    """Compile a one-line extension module that does not declare free-threading support."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_path("include")
    if compiler is None or not (Path(include) / "Python.h").is_file():
        pytest.skip("needs a C compiler and Python.h")
    source = directory / "fakemod.c"
    source.write_text(
        "#include <Python.h>\n"
        'static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "fakemod", NULL, -1, NULL};\n'
        "PyMODINIT_FUNC PyInit_fakemod(void) { return PyModule_Create(&def); }\n"
    )
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    subprocess.run(
        [compiler, "-shared", "-fPIC", f"-I{include}", str(source), "-o", f"fakemod{suffix}"],
        cwd=directory,
        check=True,
        timeout=60,
    )


@needs_free_threaded
@pytest.mark.parametrize(
    "how",
    ["plain", "-W ignore", "-W error", "catch_warnings(record=True)"],
)
def test_gil_reenabled_by_names_a_real_extension(tmp_path: Path, how: str) -> None:
    # A real import of a module without Py_mod_gil: the name is kept whatever the
    # warning filters do (pytest records warnings, which bypasses showwarning).
    # Own directory: under pytest-run-parallel the threads of one test share tmp_path.
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    _build_extension_without_ft_support(directory)
    flags = how.split() if how.startswith("-W") else []
    wrap = "with warnings.catch_warnings(record=True):" if how.startswith("catch") else "if True:"
    out = run_python(
        f"""
        import sys, warnings, ftpipe, ftpipe._runtime as rt
        assert not sys._is_gil_enabled()
        {wrap}
            try:
                import fakemod
            except RuntimeWarning:
                pass  # -W error: the import fails, the GIL is on all the same
        print(sys._is_gil_enabled(), rt.gil_reenabled_by())
        print(ftpipe.runtime_info(find_others=False).gil_summary)
        """,
        *flags,
        env={"PYTHONPATH": str(directory), "PYTHON_GIL": None},
    )
    assert out.splitlines() == [
        "True ('fakemod',)",
        "free-threaded build, GIL re-enabled by importing fakemod",
    ]
