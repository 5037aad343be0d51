"""The demo's HTML page: one self-contained file with the tables and a plot per workload.

Plots are the detector's own (inline SVG from matplotlib, the ``report`` extra);
without matplotlib the page keeps its tables and says how to get the plots.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from pathlib import Path

from .._runtime import runtime_info
from ..diagnose._report import NO_MATPLOTLIB, svg_plot
from ._interpreters import has_numpy
from ._model import DemoResult
from ._table import level, pipeline_rows, table_rows

__all__ = ["write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;
     padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{margin-top:1.6em}
.lead{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #d0d0d0;padding:4px 8px;font-size:14px;text-align:left;vertical-align:top}
th{background:#f3f4f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.good{background:#e6f4ea}td.flat{background:#fdecea}td.na{color:#888}
.verdict{display:inline-block;padding:1px 8px;border-radius:10px;background:#e8eefc;font-weight:600;
         white-space:nowrap}
.note{color:#8a5300;background:#fff8e6;padding:.4em .7em;border-radius:4px}
section{border-top:1px solid #ddd;margin-top:2em}
.plot svg{max-width:100%;height:auto}
code{background:#f4f4f4;padding:0 3px;border-radius:3px}
.legend{font-size:13px;color:#555}
"""


def _cell(text: str, numeric_ideal: float | None) -> str:
    """A table cell, shaded for speedups: green near the ideal, red when flat or worse."""
    escaped = html.escape(text)
    if numeric_ideal and text.endswith("x"):
        try:
            value = float(text[:-1])
        except ValueError:
            return f"<td>{escaped}</td>"
        kind = "good" if value >= 0.75 * numeric_ideal else "flat" if value < 1.2 else ""
        return f'<td class="num {kind}">{escaped}</td>'
    if text in ("no numpy", "out of time", "-") or text.startswith("n/a"):
        return f'<td class="na">{escaped}</td>'
    return f"<td>{escaped}</td>"


def _table(rows: Sequence[Sequence[str]], ideal: float | None, verdict_col: int = -1) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in rows[0])
    body = []
    for r in rows[1:]:
        cells = []
        for i, text in enumerate(r):
            if i == verdict_col and text and not text.startswith("error"):
                cells.append(f'<td><span class="verdict">{html.escape(text)}</span></td>')
            else:
                cells.append(_cell(text, ideal if i > 0 else None))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _pipeline_table(rows: Sequence[Sequence[str]], ideal: float) -> str:
    # Cells read "1.85x (start 0.1 s)": shade by the leading number.
    head = "".join(f"<th>{html.escape(h)}</th>" for h in rows[0])
    body = []
    for r in rows[1:]:
        cells = [f"<td>{html.escape(r[0])}</td>", f'<td class="num">{html.escape(r[1])}</td>']
        for text in r[2:]:
            lead = text.split(" ")[0]
            shaded = _cell(lead, ideal)
            cells.append(shaded.replace(html.escape(lead), html.escape(text), 1))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _config_rows(result: DemoResult) -> list[list[str]]:
    rows = [["configuration", "interpreter", "version", "GIL", "numpy"]]
    for c in result.configurations:
        gil = {
            None: "off (default)" if c.free_threaded else "always on",
            0: "off",
            1: "on (-X gil=1)",
        }
        rows.append(
            [
                c.label,
                c.executable,
                c.version,
                gil[c.gil],
                "yes" if has_numpy(c.executable) else "no",
            ]
        )
    return rows


def write_report(result: DemoResult, path: Path) -> Path:
    """Write the demo's page to ``path`` and return it."""
    k = level(result)
    info = runtime_info(find_others=False)
    parts = [
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width, initial-scale=1'>",
        f"<title>ftpipe demo: threads, subinterpreters or processes?</title><style>{_CSS}</style>",
        "</head><body>",
        "<h1>Threads, subinterpreters or processes?</h1>",
        f"<p class=lead>Measured by <code>python -m ftpipe demo{' --quick' if result.quick else ''}"
        f"</code> on {time.strftime('%Y-%m-%d %H:%M')}: Python {html.escape(info.version)} "
        f"({html.escape(info.gil_summary)}), {result.cores} usable cores, "
        f"{result.seconds:.0f} s in all.</p>",
    ]
    parts += [f"<p class=note>{html.escape(n)}</p>" for n in result.notes]
    parts += [
        f"<h2>Speedup of {k} threads over 1</h2>",
        f"<p>Each workload ran in plain threads at concurrency 1, 2, 4… in a fresh process per "
        f"interpreter configuration ({k}.00x is perfect on {result.cores} cores). "
        "<code>gil=1</code> is the same free-threaded binary with the GIL forced on: the only "
        "difference between those two columns is the GIL.</p>",
        _table(table_rows(result), float(k), verdict_col=len(result.configurations) + 1),
        "<p class=legend>Green: at least 75% of perfect scaling. Red: no gain (below 1.2x). "
        "<i>best</i>: the recommended concurrency; in parentheses when the verdict is "
        "inconclusive (the best measured, not a recommendation). The executor column is the "
        "detector's advice on a free-threaded build and on a GIL build.</p>",
    ]
    ran = [d for d in result.pipelines.values() if "kinds" in d]
    if result.pipelines and not ran:
        parts += [
            "<h2>The same pipeline on each executor</h2>",
            "<p class=note>Skipped: the demo ran out of its time budget. Run "
            "<code>python -m ftpipe demo --workloads pure-python</code> to give it time.</p>",
        ]
    elif result.pipelines:
        parts += [
            "<h2>The same pipeline on each executor</h2>",
            "<p><code>source → parse → pure-Python stage</code>, the last stage on 2 workers of "
            "each executor kind, against 1 worker on a thread. Workers were started before the "
            "clock ran; their start-up time is shown apart.</p>",
            _pipeline_table(pipeline_rows(result), 2.0),
        ]
    plots = {id(r): svg_plot(r.diagnosis) if r.diagnosis else None for r in result.rows}
    if any(r.diagnosis is not None and plots[id(r)] is None for r in result.rows):
        parts.append(f"<p class=note>{html.escape(NO_MATPLOTLIB, quote=False)}</p>")
    for r in result.rows:
        anchor = html.escape(r.workload.key)
        parts.append(f"<section id={anchor}><h2>{html.escape(r.workload.title)}</h2>")
        parts.append(f"<p>{html.escape(r.workload.fn.__doc__ or '')}</p>")
        if r.diagnosis is None:
            parts.append(f"<p class=note>Not measured: {html.escape(r.error)}</p></section>")
            continue
        d = r.diagnosis
        parts.append(
            f"<p><span class=verdict>{html.escape(d.verdict.value)}</span> "
            f"{html.escape(d.explanation)}</p>"
        )
        no_numpy = [label for label, why in r.skipped.items() if why == "no numpy"]
        late = [label for label, why in r.skipped.items() if why != "no numpy"]
        if no_numpy:
            parts.append(
                f"<p class=note>Not measured on {html.escape(', '.join(no_numpy))}: numpy is "
                "not installed there (add an interpreter that has it with "
                "<code>--python PATH</code>).</p>"
            )
        if late:
            parts.append(
                f"<p class=note>Not measured on {html.escape(', '.join(late))}: left out to "
                "keep the demo within its time budget.</p>"
            )
        if plots[id(r)]:
            parts.append(f"<div class=plot>{plots[id(r)]}</div>")
        parts.append("</section>")
    parts.append("<h2>Interpreter configurations</h2>")
    parts.append(_table(_config_rows(result), None))
    parts.append("</body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
