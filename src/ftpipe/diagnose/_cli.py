"""``python -m ftpipe diagnose MODULE:FUNC --inputs MODULE:ATTR|FILE.pkl [...]``."""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


class _UsageError(Exception):
    pass


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--concurrency wants numbers like 1,2,4; got {text!r}"
        ) from None
    if not levels or any(c < 1 for c in levels):
        raise argparse.ArgumentTypeError(f"--concurrency levels must be positive; got {text!r}")
    return levels


def _import_attr(spec: str, what: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _UsageError(f"{what} must look like MODULE:NAME, got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(
            0, os.getcwd()
        )  # like `python -m`: the working directory's modules are found
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise _UsageError(f"{what}: cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _UsageError(f"{what}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _inputs(spec: str) -> list[Any]:
    if spec.endswith((".pkl", ".pickle")) or (os.path.exists(spec) and ":" not in spec):
        try:
            with open(spec, "rb") as f:
                data = pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            raise _UsageError(f"--inputs: cannot read pickle file {spec!r}: {exc}") from exc
    else:
        data = _import_attr(spec, "--inputs")
        if callable(data):
            data = data()
    if isinstance(data, str | bytes):
        raise _UsageError(f"--inputs {spec!r} is a {type(data).__name__}, not a list of items")
    try:
        items = list(data)
    except TypeError:
        raise _UsageError(
            f"--inputs {spec!r} is a {type(data).__name__}, not an iterable of items"
        ) from None
    if not items:
        raise _UsageError(f"--inputs {spec!r} gave no items")
    return items


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ftpipe diagnose",
        description="Tell why a function does (not) scale with threads: the GIL, a lock, shared "
        "objects, a native thread pool; recommend a concurrency and an executor.",
    )
    p.add_argument("function", metavar="MODULE:FUNC", help="the function to diagnose")
    p.add_argument(
        "--inputs",
        required=True,
        metavar="MODULE:ATTR|FILE.pkl",
        help="a list (or zero-argument callable returning an iterable) of items, or a pickle file",
    )
    p.add_argument(
        "--concurrency",
        type=_levels,
        default=None,
        metavar="1,2,4",
        help="concurrency levels (default 1,2,4,... up to twice the usable cores)",
    )
    p.add_argument(
        "--json", metavar="PATH|-", help="write the JSON document here ('-' = stdout alone)"
    )
    p.add_argument("--html", metavar="PATH", help="write the HTML report here")
    p.add_argument("--quick", action="store_true", help="shorter measurements (about 20 s)")
    p.add_argument("--in-process", action="store_true", help="measure in this process only")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the diagnose command; return the exit status (0 ok, 2 usage error)."""
    from ._api import diagnose
    from ._report import summary_table, write_html

    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        fn = _import_attr(args.function, "MODULE:FUNC")
        if not callable(fn):
            raise _UsageError(f"{args.function} is a {type(fn).__name__}, not a function")
        items = _inputs(args.inputs)
    except _UsageError as exc:
        print(f"ftpipe diagnose: error: {exc}", file=sys.stderr)
        return 2
    json_to_stdout = args.json == "-"
    out = sys.stderr if json_to_stdout else sys.stdout
    progress: Callable[[str], None] | None = None
    if sys.stderr.isatty():

        def progress(line: str) -> None:
            print(f"  {line}", file=sys.stderr, flush=True)

    print(
        f"diagnosing {args.function} on {len(items)} items"
        + (" (quick)" if args.quick else " (up to 75 s; --quick for ~20 s)"),
        file=sys.stderr,
    )
    d = diagnose(
        fn,
        items,
        concurrency=args.concurrency,
        quick=args.quick,
        progress=progress,
        configurations="in-process" if args.in_process else "auto",
    )
    if json_to_stdout:
        sys.stdout.write(d.to_json() + "\n")
    elif args.json:
        Path(args.json).write_text(d.to_json() + "\n")
    print(summary_table([d]), file=out)
    print("", file=out)
    print(d.explanation, file=out)
    if args.html:
        print(f"report: {write_html([d], Path(args.html))}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
