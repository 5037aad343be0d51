"""Reports: JSON document, self-contained HTML (one plot per stage), table, headless Chromium."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ftpipe.diagnose import Curve, Diagnosis, ExecutorAdvice, Point, Verdict
from ftpipe.diagnose._report import NO_MATPLOTLIB, summary_table, write_html, write_json

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
CHROMIUM = "/usr/bin/chromium"


def _diagnosis(stage: str, verdict: Verdict) -> Diagnosis:
    def pts(speedups: list[float]) -> tuple[Point, ...]:
        return tuple(
            Point(c, 100 * s, 0.01, c / (100 * s), s, 0.0, 0.05, 3, 90, 40.0, (100 * s,) * 3)
            for c, s in zip((1, 2, 4), speedups, strict=True)
        )

    curves = (
        Curve("3.13t gil=0", "no-gil", "/py", "3.13.5", True, False, points=pts([1, 1.9, 1.9])),
        Curve("3.13t gil=1", "gil", "/py", "3.13.5", True, True, points=pts([1, 1.0, 1.0])),
        Curve(
            "3.13 GIL build",
            "gil-build",
            "/py3",
            "3.13.0",
            False,
            True,
            status="import-error",
            message="ModuleNotFoundError: No module named 'numpy' <script>",
        ),
    )
    return Diagnosis(
        f"mod:{stage}",
        verdict,
        "Explained <with> & numbers.",
        curves,
        2,
        ExecutorAdvice("thread", "thread"),
        stage=stage,
        usable_cores=2,
        interpreter="3.13t",
    )


class _Checker(HTMLParser):
    """Fails on unbalanced tags; counts plots and sections."""

    VOID = {"meta", "br", "img", "hr", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.counts: dict[str, int] = {}
        self.plots = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if ("class", "plot") in attrs:
            self.plots += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (
            f"unbalanced </{tag}> with open {self.stack[-3:]}"
        )
        self.stack.pop()


def _check(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    return checker


def test_html_is_well_formed_self_contained_with_one_plot_per_stage(tmp_path: Path) -> None:
    results = [_diagnosis("0:decode", Verdict.GIL_BOUND), _diagnosis("1:augment", Verdict.SCALES)]
    path = write_html(results, tmp_path / "r" / "report.html", notes=["a note"])
    page = path.read_text()
    checker = _check(page)
    assert checker.counts["section"] == 2
    assert "gil-bound" in page and "scales" in page and "a note" in page
    assert "Explained &lt;with&gt; &amp; numbers." in page  # escaped
    assert "import-error" in page and "&lt;script&gt;" in page
    assert "<script" not in page.replace("&lt;script", "")  # nothing to run, nothing fetched
    assert 'src="http' not in page and 'href="http' not in page
    if HAVE_MATPLOTLIB:
        assert checker.plots == 2 and checker.counts["svg"] == 2
        assert NO_MATPLOTLIB not in page
    else:
        assert checker.plots == 0 and NO_MATPLOTLIB in page


def test_without_matplotlib_the_report_says_how_to_get_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib here")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    page = write_html([_diagnosis("s", Verdict.SCALES)], tmp_path / "r.html").read_text()
    assert "pip install 'ftpipe[report]'" in page and _check(page).plots == 0
    assert "<table>" in page


def test_json_report_and_table(tmp_path: Path) -> None:
    results = [_diagnosis("0:decode", Verdict.GIL_BOUND)]
    doc = json.loads(write_json(results, tmp_path / "report.json", notes=["n"]).read_text())
    assert doc["schema"] == 1 and doc["notes"] == ["n"] and doc["runtime"]["usable_cores"] >= 1
    assert doc["diagnoses"][0]["verdict"] == "gil-bound"
    assert Diagnosis.from_dict(doc["diagnoses"][0]) == results[0]
    table = summary_table(results)
    assert "0:decode" in table and "gil-bound" in table and "3.13t gil=0 1.90x" in table
    assert "3.13 GIL build import-error" in table


def test_to_html_writes_the_file(tmp_path: Path) -> None:
    path = _diagnosis("x", Verdict.SCALES).to_html(tmp_path / "one.html")
    assert path.exists() and _check(path.read_text()).counts["section"] == 1


@pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium"
)
@pytest.mark.timeout(90)
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    path = write_html([_diagnosis("0:decode", Verdict.GIL_BOUND)], tmp_path / "report.html")
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=80,
    )
    shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "ftpipe contention report" in dom and "gil-bound" in dom
    if HAVE_MATPLOTLIB:
        assert dom.count("<svg") == 1
