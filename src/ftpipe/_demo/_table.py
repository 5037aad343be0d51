"""The demo's text table and JSON document, made from a :class:`~ftpipe._demo._model.DemoResult`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._runtime import is_free_threaded
from ..diagnose import Diagnosis, Verdict
from ..diagnose._verdict import executor_with_gil
from ._model import DemoResult

__all__ = [
    "executors",
    "format_result",
    "level",
    "pipeline_rows",
    "render",
    "speedup",
    "table_rows",
    "to_dict",
]


def level(result: DemoResult) -> int:
    """The concurrency the table reports: the core count (at least 2)."""
    return max(2, result.cores)


def speedup(d: Diagnosis, label: str, k: int) -> str:
    """``"1.85x"`` for the configuration's highest measured level not above ``k``, or its status.

    The detector measures 1, 2, 4...: on 3 cores the table shows 2 threads.
    """
    curve = next((c for c in d.curves if c.label == label), None)
    if curve is None:
        return "-"
    if not curve.ok:
        return curve.status
    level = max(p.concurrency for p in curve.points if p.concurrency <= k)
    ratio = curve.speedup_at(level)
    return "-" if ratio is None else f"{ratio:.2f}x"


def executors(d: Diagnosis) -> tuple[str, str]:
    """Recommended executor on a free-threaded build and on a GIL build.

    The detector advises for the interpreter it runs in and for 3.13t; when the demo
    runs on 3.13t, the GIL-build advice is the detector's rule for a GIL build
    (``executor_with_gil``) on one with subinterpreters (3.13 and later): the column
    names one executor for every GIL build, and the newest ones have them.
    """
    advice = d.recommended_executor
    if not is_free_threaded():
        return advice.free_threaded, advice.this_interpreter
    numpy = any(c.uses_numpy for c in d.curves)
    return advice.free_threaded, executor_with_gil(
        d.verdict, uses_numpy=numpy, subinterpreters=True
    )


def table_rows(result: DemoResult) -> list[list[str]]:
    """The battery table as cells, header first."""
    k = level(result)
    labels = [c.label for c in result.configurations]
    header = ["workload", *labels, "verdict", "best", "executor 3.13t / GIL build"]
    rows = [header]
    for row in result.rows:
        cells = [row.workload.title]
        for label in labels:
            if label in row.skipped:
                cells.append(row.skipped[label])
            elif row.diagnosis is None:
                cells.append("-")
            else:
                cells.append(speedup(row.diagnosis, label, k))
        if row.diagnosis is None:
            cells += [f"error: {row.error}", "-", "-"]
        elif row.diagnosis.verdict is Verdict.INCONCLUSIVE:
            # Not a recommendation: the detector could not tell (see the explanation).
            cells += [Verdict.INCONCLUSIVE.value, f"({row.diagnosis.best_concurrency})", "-"]
        else:
            d = row.diagnosis
            ft, gil = executors(d)
            cells += [d.verdict.value, str(d.best_concurrency), f"{ft} / {gil}"]
        rows.append(cells)
    return rows


def pipeline_rows(result: DemoResult) -> list[list[str]]:
    """The pipeline comparison as cells, header first."""
    rows = [["configuration", "1 worker", "thread x2", "interpreter x2", "process x2"]]
    for label, data in result.pipelines.items():
        if "error" in data:
            rows.append([label, f"error: {data['error']}", "", "", ""])
            continue
        cells = [label, f"{data['items'] / data['serial_s']:.0f} items/s"]
        for kind in ("thread", "interpreter", "process"):
            cell = data["kinds"].get(kind, {"error": "-"})
            if "error" in cell:
                cells.append(_short_error(cell["error"]))
            else:
                # Past the worker count is physically impossible for CPU work: noise.
                noisy = " noisy" if cell["speedup"] > 1.15 * data.get("workers", 2) else ""
                cells.append(f"{cell['speedup']:.2f}x{noisy} (start {cell['startup_s']:.1f} s)")
        rows.append(cells)
    return rows


def _short_error(text: str) -> str:
    if "subinterpreters" in text:
        return "n/a (no subinterpreters)"
    return "error: " + text[:60]


def render(rows: Sequence[Sequence[str]]) -> str:
    """Fixed-width text with a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_result(result: DemoResult) -> str:
    """The whole text summary the demo prints."""
    k = level(result)
    parts = [
        f"Speedup of {k} threads over 1, per interpreter configuration "
        f"({result.cores} usable cores: {k}.00x is perfect)",
        "",
        render(table_rows(result)),
        "",
        "verdicts: scales = threads work anywhere; gil-bound = parallel only without the GIL;",
        "internally-parallel = one call already uses several cores; *-contention = threads get",
        "in each other's way (a lock, memory bandwidth); best = recommended concurrency.",
    ]
    any_data = next((d for d in result.pipelines.values() if "items" in d), None)
    if (
        result.pipelines
        and any_data is None
        and all("time budget" in d.get("error", "") for d in result.pipelines.values())
    ):
        parts += [
            "",
            "The pipeline comparison was skipped: the demo ran out of its time budget "
            "(run `python -m ftpipe demo --workloads pure-python` to give it time).",
        ]
    elif result.pipelines:
        items = any_data["items"] if any_data else "?"
        parts += [
            "",
            f"One pipeline, source -> parse -> pure-Python stage ({items} items), on each executor:",
            "speedup of 2 workers over 1 (warm workers; their start-up time apart)",
            "",
            render(pipeline_rows(result)),
        ]
    unsure = [r for r in result.rows if r.diagnosis and r.diagnosis.verdict is Verdict.INCONCLUSIVE]
    if unsure:
        parts += [
            "",
            f"{len(unsure)} inconclusive: the figures were too noisy to attribute (other processes "
            "used the cores?); the report says why for each. Rerun on a quieter machine.",
        ]
    for note in result.notes:
        parts += ["", note]
    return "\n".join(parts)


def to_dict(result: DemoResult) -> dict[str, Any]:
    """The JSON document the demo writes next to the HTML report."""
    return {
        "cores": result.cores,
        "quick": result.quick,
        "seconds": round(result.seconds, 1),
        "configurations": [c.__dict__ for c in result.configurations],
        "table": table_rows(result),
        "workloads": [
            {
                "key": r.workload.key,
                "title": r.workload.title,
                "skipped": r.skipped,
                "error": r.error,
                "diagnosis": r.diagnosis.to_dict() if r.diagnosis else None,
            }
            for r in result.rows
        ],
        "pipelines": result.pipelines,
        "notes": list(result.notes),
    }
