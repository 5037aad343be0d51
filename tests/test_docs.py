"""The documentation's examples run, its API reference is complete, and it builds.

Every fenced ``python`` block in docs/*.md runs (in a fresh namespace, in order within
its page) unless its first line is a ``# not run`` comment saying why; the doctest
examples in the public docstrings run too.  The Sphinx build itself (with warnings as
errors) runs here when Sphinx is installed, and always in ``nox -s docs``.
"""

from __future__ import annotations

import doctest
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ftpipe

# Examples count threads and the demo tests patch module globals: one thread at a time.
pytestmark = pytest.mark.thread_unsafe

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md"))
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _blocks(page: Path) -> list[tuple[int, str]]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        code = match.group(1)
        if code.lstrip().startswith("# not run"):
            continue
        found.append((text.count("\n", 0, match.start()) + 1, code))
    return found


EXAMPLES = [
    pytest.param(page, line, code, id=f"{page.name}:{line}")
    for page in PAGES
    for line, code in _blocks(page)
]


def test_the_docs_have_runnable_examples() -> None:
    assert len(EXAMPLES) >= 10
    assert {p.name for p in PAGES} >= {
        "index.md",
        "getting-started.md",
        "pipelines.md",
        "executors.md",
        "free-threading.md",
        "diagnose.md",
        "diagnostic-mode.md",
        "dask.md",
        "training.md",
        "checkpointing.md",
        "api.md",
    }


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("page", "line", "code"), EXAMPLES)
def test_example_runs(page: Path, line: int, code: str) -> None:
    compiled = compile(code, f"{page.name}:{line}", "exec")
    namespace = {"__name__": f"docs_example_{page.stem.replace('-', '_')}"}
    exec(compiled, namespace)  # noqa: S102 - the documentation's own examples


def test_api_reference_lists_every_public_name() -> None:
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    missing = [name for name in ftpipe.__all__ if f"ftpipe.{name}\n" not in api]
    assert not missing, f"docs/api.md does not document {missing}"


def test_every_page_is_in_the_table_of_contents() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    orphans = [p.stem for p in PAGES if p.stem != "index" and f"\n{p.stem}\n" not in index]
    assert not orphans, f"pages missing from docs/index.md's toctree: {orphans}"


def _public_doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(recurse=True)
    tests: list[doctest.DocTest] = []
    for name in ftpipe.__all__:
        obj = getattr(ftpipe, name)
        if not callable(obj):
            continue
        for test in finder.find(obj, f"ftpipe.{name}", globs={"ftpipe": ftpipe}):
            if test.examples:
                tests.append(test)
    return tests


@pytest.mark.timeout(60)
def test_docstring_examples_of_public_names_run() -> None:
    tests = _public_doctests()
    assert tests, "the public docstrings have no examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(
    importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("myst_parser") is None,
    reason="Sphinx and myst-parser are installed by nox -s docs",
)
def test_sphinx_builds_without_warnings(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
        + [str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "html" / "api.html").is_file()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(
    _chromium() is None or importlib.util.find_spec("sphinx") is None,
    reason="needs Sphinx and Debian's chromium package",
)
def test_built_pages_render_their_content_in_chromium(tmp_path: Path) -> None:
    """What a reader's browser shows: the API page has every public name, no raw markup."""
    html_dir = tmp_path / "html"
    subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", "html", str(DOCS), str(html_dir)],
        check=True,
        capture_output=True,
        timeout=280,
    )
    dom = subprocess.run(
        [
            str(_chromium()),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            (html_dir / "api.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=100,
        check=True,
    ).stdout
    for name in ("PipelineBuilder", "diagnose", "ProcessExecutor", "runtime_info"):
        assert f'id="ftpipe.{name}"' in dom
    assert "```" not in dom and "{eval-rst}" not in dom
