"""Reports: a JSON document, one self-contained HTML page with inline SVG plots, a text table.

Plots need matplotlib (``pip install 'ftpipe[report]'``), imported only here and
only when a report is written; without it the page has the tables and says how
to get the plots.
"""

from __future__ import annotations

import html
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._runtime import runtime_info
from ._records import SCHEMA_VERSION, Verdict

if TYPE_CHECKING:  # Diagnosis.to_html calls into this module: types only, no cycle
    from ._diagnosis import Diagnosis

__all__ = ["report_dict", "summary_table", "svg_plot", "write_html", "write_json"]

NO_MATPLOTLIB = (
    "Plots need matplotlib, which is not installed here: pip install 'ftpipe[report]' "
    "(or pip install matplotlib) and write the report again."
)


def report_dict(results: Sequence[Diagnosis], notes: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON document for several diagnoses (one per stage)."""
    return {
        "schema": SCHEMA_VERSION,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runtime": runtime_info(find_others=False).to_dict(),
        "notes": list(notes),
        "diagnoses": [d.to_dict() for d in results],
    }


def write_json(results: Sequence[Diagnosis], path: Path, notes: Sequence[str] = ()) -> Path:
    path.write_text(json.dumps(report_dict(results, notes), indent=2))
    return path


def summary_table(results: Sequence[Diagnosis]) -> str:
    """A fixed-width table: stage, verdict, speedups per configuration, advice."""
    rows = [
        ("stage / function", "verdict", "speedup at cores (per configuration)", "best", "executor")
    ]
    for d in results:
        speedups = []
        for c in d.curves:
            k = max(
                (p.concurrency for p in c.points if p.concurrency <= max(2, d.usable_cores)),
                default=0,
            )
            speedup = c.speedup_at(k) if c.ok else None
            if speedup is not None:
                speedups.append(f"{c.label} {speedup:.2f}x")
            else:
                speedups.append(f"{c.label} {c.status}")
        rows.append(
            (
                d.stage or d.function,
                d.verdict.value,
                "; ".join(speedups),
                str(d.best_concurrency),
                d.recommended_executor.this_interpreter,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def svg_plot(d: Diagnosis) -> str | None:
    """Items/s and CPU per item vs concurrency, one line per configuration; None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(9, 3.2))
    rate, cpu = fig.subplots(1, 2)
    for c in d.curves:
        if not c.ok:
            continue
        xs = [p.concurrency for p in c.points]
        rate.plot(xs, [p.items_per_s for p in c.points], marker="o", label=c.label)
        cpu.plot(xs, [p.cpu_s_per_item * 1e6 for p in c.points], marker="o", label=c.label)
    levels = sorted({p.concurrency for c in d.curves for p in c.points}) or [1]
    for ax, title in ((rate, "throughput (items/s)"), (cpu, "CPU per item (µs)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(x) for x in levels])
        ax.minorticks_off()
        ax.set_xlabel("concurrency (threads)")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    rate.legend(fontsize=8)
    fig.tight_layout()
    buf = io.StringIO()
    # No RDF metadata block: its namespace URLs would be the page's only external names.
    fig.savefig(
        buf, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None}
    )
    text = buf.getvalue()
    return text[text.index("<svg") :]


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}
.verdict{display:inline-block;padding:2px 8px;border-radius:4px;background:#eef;font-weight:bold}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}
.note{color:#a60}.plot svg{max-width:100%;height:auto}section{border-top:1px solid #ddd;margin-top:2em}
"""


def _curve_table(d: Diagnosis) -> str:
    rows = [
        "<tr><th>configuration</th><th>threads</th><th>items/s</th><th>speedup</th>"
        "<th>CPU µs/item</th><th>cores busy</th><th>others' cores</th><th>spread</th>"
        "<th>peak RSS MiB</th></tr>"
    ]
    for c in d.curves:
        if not c.ok:
            rows.append(
                f"<tr><td>{html.escape(c.label)}</td><td colspan=8>{html.escape(c.status)}: "
                f"{html.escape(c.message)}</td></tr>"
            )
            continue
        for p in c.points:
            speedup = c.speedup_at(p.concurrency)
            rows.append(
                f"<tr><td>{html.escape(c.label)}</td><td>{p.concurrency}</td><td>{p.items_per_s:.1f}</td>"
                f"<td>{'' if speedup is None else f'{speedup:.2f}x'}</td><td>{p.cpu_s_per_item * 1e6:.1f}</td>"
                f"<td>{p.cores_busy:.2f}</td><td>{p.neighbour_cores:.2f}</td><td>{p.spread:.0%}</td>"
                f"<td>{p.peak_rss_mib:.0f}</td></tr>"
            )
    return "<table>" + "".join(rows) + "</table>"


def _section(d: Diagnosis, plot: str | None) -> str:
    title = html.escape(d.stage or d.function)
    advice = d.recommended_executor
    parts = [
        f"<section><h2>{title}</h2>",
        f"<p>function <code>{html.escape(d.function)}</code>: <span class=verdict>{d.verdict.value}</span></p>",
        f"<p>{html.escape(d.explanation)}</p>",
    ]
    if d.verdict is Verdict.INCONCLUSIVE:
        parts.append(
            f"<p>No recommendation (inconclusive); best measured concurrency {d.best_concurrency}.</p>"
        )
    else:
        parts.append(
            f"<p>Recommended: concurrency <b>{d.best_concurrency}</b>, executor <b>{advice.this_interpreter}"
            f"</b> on {html.escape(d.interpreter)}, <b>{advice.free_threaded}</b> on a free-threaded build.</p>"
        )
    if d.gil_reenabled_by:
        parts.append(
            f"<p class=note>GIL re-enabled by: {html.escape(', '.join(d.gil_reenabled_by))}</p>"
        )
    parts += [f"<p class=note>{html.escape(n)}</p>" for n in d.notes]
    if d.executor_trials:
        rows = "".join(
            f"<tr><td>{t.executor}</td><td>{t.concurrency}</td><td>"
            + (f"{t.items_per_s:,.0f}" if t.items_per_s is not None else html.escape(t.status))
            + f"</td><td>{html.escape(t.message[:200])}</td></tr>"
            for t in d.executor_trials
        )
        parts.append(
            "<p>Measured through a pipeline here:</p><table><tr><th>executor</th>"
            f"<th>workers</th><th>items/s</th><th></th></tr>{rows}</table>"
        )
    if plot is not None:
        parts.append(f"<div class=plot>{plot}</div>")
    parts.append(_curve_table(d) + "</section>")
    return "\n".join(parts)


def write_html(results: Sequence[Diagnosis], path: Path, notes: Sequence[str] = ()) -> Path:
    """Write one self-contained page for ``results`` and return its path."""
    plots = [svg_plot(d) for d in results]
    body = []
    if any(p is None for p in plots):
        body.append(f"<p class=note>{html.escape(NO_MATPLOTLIB, quote=False)}</p>")
    body += [f"<p class=note>{html.escape(n)}</p>" for n in notes]
    body += [_section(d, p) for d, p in zip(results, plots, strict=True)]
    info = runtime_info(find_others=False)
    page = (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        "<title>ftpipe contention report</title>"
        f"<style>{_CSS}</style></head><body>\n<h1>ftpipe contention report</h1>\n"
        f"<p>Python {info.version} ({html.escape(info.gil_summary)}), {info.usable_cores} usable cores, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}.</p>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
