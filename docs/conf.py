"""Sphinx configuration for ftpipe's documentation (built by ``nox -s docs`` with -W)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

# Document the checkout, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import ftpipe  # noqa: E402

project = "ftpipe"
author = "ftpipe contributors"
copyright = "2026, ftpipe contributors"  # noqa: A001 - Sphinx's name for it
release = ftpipe.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Dataclass fields listed under "Attributes:" become :ivar: fields, not attribute
# targets that would clash with autodoc's own entries for the same fields.
napoleon_use_ivar = True

# furo when installed (docs/requirements.txt pins it); Sphinx's own theme otherwise.
html_theme = "furo" if importlib.util.find_spec("furo") else "alabaster"
html_title = f"ftpipe {release}"
html_static_path: list[str] = []

# Examples that cannot run in tests start with a "# not run: why" line (tests/test_docs.py
# skips them); readers do not need to see it.
_NOT_RUN = re.compile(r"^(```python[ \t]*\n)# not run\b[^\n]*\n", re.MULTILINE)


def _hide_not_run(app: object, docname: str, source: list[str]) -> None:
    source[0] = _NOT_RUN.sub(r"\1", source[0])


def setup(app: object) -> dict[str, object]:
    app.connect("source-read", _hide_not_run)  # type: ignore[attr-defined]
    return {"parallel_read_safe": True}
