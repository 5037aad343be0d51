"""ftpipe's sessions: the test matrix (3.11, 3.12, 3.13, 3.13t, 3.13t with the GIL forced
on), the free-threaded parallel and stress runs, CPython's concurrent.futures tests against
ftpipe's executors (conformance), lint, typing, docs, benchmarks and the demo.

``nox -t ci`` runs what CI runs (see README.md).  Interpreters come from
tools/find-pythons.sh, which builds a free-threaded 3.13 when none is found; its
directory is put first on PATH so nox finds ``python3.13t`` and the pyenv builds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PYTHONS = ["3.11", "3.12", "3.13", "3.13t"]
FREE_THREADED = "3.13t"
TOOLS_PYTHON = "3.11"  # ruff, mypy and sphinx run here; mypy cannot be built on 3.13t offline.

# Pinned so lint and typing verdicts do not change under us between runs.
RUFF = "ruff==0.17.6"
MYPY = "mypy==2.4.1"
# The only torch request that installs a CPU build from this machine's disk; anything
# else downloads several GB of CUDA wheels.
TORCH = "torch==2.13.0"

# Each test session's own limit per test; pytest-timeout also has a default in pyproject.
TEST_TIMEOUT = "120"
# Dedicated sessions run these; the plain matrix leaves them out.
NOT_EXTRAS = "not torch and not dask and not conformance"
# CPython ships test.test_concurrent_futures from 3.13 on (pyenv's 3.11 and 3.12 lack it).
CONFORMANCE_PYTHONS = [FREE_THREADED, "3.13"]

nox.options.reuse_venv = "yes"
# Interpreters come from our own script, never downloaded by nox behind our back.
nox.options.download_python = "never"
# With CI set, a missing interpreter fails the run instead of being skipped.
nox.options.error_on_missing_interpreters = "CI" in os.environ
# No PIP_PREFER_BINARY here: the sessions resolve packages as a user's pip does, so a
# release without a wheel for an interpreter shows up as a failure, not a quiet fallback.
# Packages that must install from wheels on every interpreter of the matrix: the
# `report` extra pins versions that have them (a source build of matplotlib, contourpy,
# kiwisolver or pillow needs a compiler and the internet).
BINARY_ONLY = "--only-binary=numpy,matplotlib,contourpy,kiwisolver,pillow,fonttools"

# The free-threaded interpreter must still have the GIL off once the test
# dependencies are imported: one extension module without free-threading support
# silently turns it back on for the whole process.
GIL_STILL_OFF = """
import sys
import ftpipe, ftpipe._runtime as rt
import numpy, hypothesis, psutil, pytest, xdist, pytest_timeout
if sys._is_gil_enabled():
    sys.exit("GIL re-enabled after importing the test dependencies; by: "
             + (", ".join(rt.gil_reenabled_by()) or "a module imported before ftpipe"))
print("ok: free-threaded build, GIL still disabled after importing ftpipe and test deps")
"""


def _expose_interpreters() -> None:
    """Run tools/find-pythons.sh once and put its directory first on PATH."""
    listing = any(a in ("-l", "--list", "--list-sessions", "--json") for a in sys.argv)
    cache_bin = Path(os.environ.get("FTPIPE_CACHE", Path.home() / ".cache/ftpipe")) / "bin"
    if listing:
        # Listing sessions must not start a several-minute interpreter build.
        directory = str(cache_bin)
    else:
        # stderr passes through: a first run builds 3.13t and says so while it does.
        # On failure carry on: nox then reports the missing interpreter (an error under CI).
        result = subprocess.run(
            ["bash", str(ROOT / "tools/find-pythons.sh"), "--require", FREE_THREADED],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
        directory = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        directory = directory or str(cache_bin)
    path = os.environ.get("PATH", "")
    if directory not in path.split(os.pathsep):
        os.environ["PATH"] = directory + os.pathsep + path


_expose_interpreters()


def _install_project(session: nox.Session, extras: str = "dev") -> None:
    # A real (non-editable) install: the tests see what a user's pip would install.
    session.install(BINARY_ONLY, f".[{extras}]")


def _ensure_chromium(session: nox.Session) -> None:
    """Install Debian's chromium for the browser checks of the reports and docs.

    As root with apt (CI, the project's machines) it is installed when missing;
    elsewhere the browser tests skip and say why.  Under CI a missing browser is an
    error: a skipped browser check must never pass for a rendered page.
    """
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run("apt-get", "update", "-qq", external=True, env=env)
        session.run("apt-get", "install", "-y", "-qq", "chromium", external=True, env=env)
    if "CI" in os.environ and not (shutil.which("chromium") or shutil.which("chromium-browser")):
        session.error("CI needs Debian's chromium for the browser checks, and it is missing")


def _pytest(session: nox.Session, *args: str) -> None:
    session.run(
        "python", "-m", "pytest", "-n", "2", f"--timeout={TEST_TIMEOUT}", *args, *session.posargs
    )


@nox.session(python=PYTHONS, tags=["ci"])
def tests(session: nox.Session) -> None:
    """Unit tests on one interpreter (the GIL off on 3.13t, checked).

    3.11 and 3.13t also install the `report` extra (matplotlib, from wheels only) and
    chromium, so the plots and the browser checks of the reports run.
    """
    if session.python in ("3.11", FREE_THREADED):
        _install_project(session, "dev,report")
        _ensure_chromium(session)
    else:
        _install_project(session)
    if session.python == FREE_THREADED:
        session.run("python", "-c", GIL_STILL_OFF)
    _pytest(session, "-m", f"not slow and {NOT_EXTRAS}")
    if session.python in ("3.11", FREE_THREADED):
        # Tests that measure scaling (the detector's known-cause battery) run
        # alone: beside another test worker the cores are not theirs to measure.
        session.run(
            "python",
            "-m",
            "pytest",
            "-n",
            "0",
            f"--timeout={TEST_TIMEOUT}",
            "-m",
            f"slow and {NOT_EXTRAS}",
            *session.posargs,
        )


@nox.session(name="tests-3.13t-gil", python=FREE_THREADED, tags=["ci"])
def tests_gil(session: nox.Session) -> None:
    """Unit tests on the free-threaded binary with the GIL forced on (PYTHON_GIL=1)."""
    _install_project(session)
    session.env["PYTHON_GIL"] = "1"
    session.run("python", "-c", "import sys, ftpipe; assert sys._is_gil_enabled(), 'GIL not on'")
    _pytest(session, "-m", f"not slow and {NOT_EXTRAS}")


@nox.session(name="tests-parallel", python=FREE_THREADED, tags=["ci"])
def tests_parallel(session: nox.Session) -> None:
    """Each unit test in 4 threads at once (pytest-run-parallel) on 3.13t, GIL off."""
    _install_project(session)
    session.install("pytest-run-parallel")
    session.run("python", "-c", GIL_STILL_OFF)
    _pytest(
        session, "--parallel-threads=4", "-m", f"not thread_unsafe and not slow and {NOT_EXTRAS}"
    )


def _stress(session: nox.Session, default_profile: str) -> None:
    if not any((ROOT / "stress").glob("test_*.py")):
        session.error("stress/ holds no test_*.py files yet: nothing to run")
    _install_project(session)
    session.env["FTPIPE_STRESS_PROFILE"] = os.environ.get("FTPIPE_STRESS_PROFILE", default_profile)
    # No xdist: stress tests start their own threads and want both cores.
    session.run("python", "-m", "pytest", "stress/", *session.posargs)


@nox.session(python=FREE_THREADED, tags=["ci"])
def stress(session: nox.Session) -> None:
    """Hypothesis stress and fault tests on 3.13t, GIL off (FTPIPE_STRESS_PROFILE=ci|soak)."""
    session.run("python", "-c", "import sys; assert not sys._is_gil_enabled()")
    _stress(session, "ci")


@nox.session(name="stress-3.11", python="3.11", tags=["ci"])
def stress_gil_build(session: nox.Session) -> None:
    """A shorter stress pass on a stock GIL build (FTPIPE_STRESS_PROFILE, default dev)."""
    _stress(session, "dev")


@nox.session(python=CONFORMANCE_PYTHONS, tags=["ci"])
def conformance(session: nox.Session) -> None:
    """CPython's own concurrent.futures tests against ftpipe's three executors.

    tests/conformance combines the generic classes of the interpreter's
    ``test.test_concurrent_futures`` with a mixin per executor; skipped tests and
    their reasons are listed in docs/executors.md ("Conformance").
    """
    _install_project(session)
    if session.python == FREE_THREADED:
        session.run("python", "-c", GIL_STILL_OFF)
    session.run("python", "-c", "import test.test_concurrent_futures.util")  # present, or fail
    _pytest(session, "-m", "conformance", "tests/conformance")


@nox.session(python=TOOLS_PYTHON, tags=["ci"])
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=TOOLS_PYTHON, tags=["ci"])
def typing(session: nox.Session) -> None:
    """mypy --strict on src/ (configured in pyproject.toml)."""
    _install_project(session)
    session.install(MYPY)
    session.run("mypy", "src/ftpipe", *session.posargs)


@nox.session(python=TOOLS_PYTHON, tags=["ci"])
def docs(session: nox.Session) -> None:
    """Build the Sphinx docs with warnings as errors into docs/_build/html.

    The examples in the pages are run by tests/test_docs.py in every test session.
    """
    if not (ROOT / "docs" / "conf.py").is_file():
        session.error("docs/conf.py does not exist: there are no docs to build yet")
    _install_project(session)  # dev: numpy, and pytest for the browser check below
    session.install("-r", str(ROOT / "docs" / "requirements.txt"))
    session.run(
        "python", "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )
    # The built pages open in a real browser (tests/test_docs.py needs Sphinx, so it
    # runs here rather than in the test sessions).
    _ensure_chromium(session)
    session.run(
        "python",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--timeout={TEST_TIMEOUT}",
        "tests/test_docs.py",
        "-k",
        "chromium",
        "-rs",
    )
    session.log(f"open {ROOT / 'docs/_build/html/index.html'}")


@nox.session(python=FREE_THREADED, default=False)
def bench(session: nox.Session) -> None:
    """Run every benchmarks/*.py with --quick; ``-- FILE.py ... --flags`` overrides both."""
    files = [a for a in session.posargs if a.endswith(".py")]
    flags = [a for a in session.posargs if not a.endswith(".py")] or ["--quick"]
    files = files or sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "benchmarks").glob("*.py")
        if not p.name.startswith("_")
    )
    if not files:
        session.error("benchmarks/ holds no benchmark scripts yet")
    _install_project(session, "numpy")
    # The peer we compare against; pure Python, but not worth failing the session over.
    session.install("spdl-core", success_codes=[0, 1])
    for script in files:
        if script.endswith("engine_yields.py") and os.geteuid() != 0:
            session.log(f"not running {script}: it reads the kernel's tracer, as root only")
            continue
        session.run("python", script, *flags)


@nox.session(python=FREE_THREADED, default=False)
def demo(session: nox.Session) -> None:
    """``python -m ftpipe demo`` on 3.13t, with every interpreter found on PATH.

    Arguments after ``--`` go to the demo (``--quick``, ``--out DIR``, ``--python PATH``).
    """
    # Editable, so the demo runs the working tree.  Its probes in the other interpreters
    # (3.11, 3.13...) get ftpipe alone on PYTHONPATH (a directory holding a link to the
    # package, diagnose/_configs.py only_ftpipe_path), never this venv's site-packages,
    # whose cp313t numpy would shadow (and break) the numpy those interpreters have.
    session.install("-e", ".[numpy,report]")
    session.run("python", "-m", "ftpipe", "demo", *session.posargs)


@nox.session(python="3.11", tags=["ci"])
def dask(session: nox.Session) -> None:
    """Tests marked ``dask`` against a real LocalCluster."""
    _install_project(session, "dask,dev")
    _pytest(session, "-m", "dask")


@nox.session(python="3.11", tags=["ci"])
def torch(session: nox.Session) -> None:
    """Tests marked ``torch`` (CPU torch 2.13.0, Python 3.11 only on this machine)."""
    session.install(TORCH)
    _install_project(session, "torch,dev")
    _pytest(session, "-m", "torch")
