"""``python -m ftpipe demo [--quick] [--out DIR] [--python PATH] [--workloads KEYS] [--no-pipeline]``.

Parses the demo's options, runs it, prints the table and writes ``demo.json`` and
``demo.html`` into ``--out``; ``ftpipe.__main__`` hands the demo's arguments here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._report import write_report
from ._runner import run_demo
from ._table import format_result, to_dict
from ._workloads import WORKLOADS

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ftpipe demo",
        description=(
            "Threads, subinterpreters or processes? Run the classic workloads (pure-Python loop, "
            "numpy add, numpy dot, writing files, waiting on I/O) through the contention "
            "detector on every interpreter found, and one pipeline on every executor."
        ),
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="where demo.html and demo.json go (default: ./ftpipe-report-demo-<date-time>)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short measurements, fewer interpreters (under 1.5 min)",
    )
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="PATH",
        help="another interpreter to include, e.g. a virtual environment's python with numpy "
        "(replaces a found one of the same version); may be repeated",
    )
    parser.add_argument(
        "--workloads",
        metavar="KEYS",
        help="comma-separated subset of: " + ", ".join(w.key for w in WORKLOADS),
    )
    parser.add_argument("--no-pipeline", action="store_true", help="skip the pipeline comparison")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return the exit status (0, or 2 for bad arguments)."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    keys = None
    if args.workloads:
        keys = [k.strip() for k in args.workloads.split(",") if k.strip()]
        unknown = sorted(set(keys) - {w.key for w in WORKLOADS})
        if unknown:
            _parser().error(f"unknown workload(s) {', '.join(unknown)}")
    out: Path = args.out or Path(f"ftpipe-report-demo-{time.strftime('%Y%m%d-%H%M%S')}")
    print(
        "ftpipe demo: measuring on every interpreter found; progress below, table at the end"
        + (" (quick)" if args.quick else ""),
        file=sys.stderr,
    )
    try:
        result = run_demo(
            quick=args.quick,
            pythons=args.python,
            workloads=keys,
            pipelines=not args.no_pipeline,
        )
    except ValueError as exc:
        print(f"ftpipe demo: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.json").write_text(json.dumps(to_dict(result), indent=2))
    page = write_report(result, out / "demo.html")
    print(format_result(result))
    print(f"\nreport: {page.resolve()}")
    print(f"took {result.seconds:.0f} s")
    return 0
