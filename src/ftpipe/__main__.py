"""The ``python -m ftpipe`` command line: ``doctor``, ``diagnose`` and ``demo``.

``doctor`` lives here; ``diagnose`` and ``demo`` hand their arguments, untouched,
to ``ftpipe.diagnose._cli.main`` and ``ftpipe._demo._cli.main``, imported only when
asked for, so ``doctor`` keeps working (and stays fast) whatever they import.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence

from . import __version__
from ._runtime import RuntimeInfo, runtime_info

__all__ = ["main"]

# Sub-commands whose own module parses the rest of the command line.
_DELEGATES = {
    "diagnose": (
        "ftpipe.diagnose._cli",
        "find why a function does not scale (GIL or other contention)",
    ),
    "demo": ("ftpipe._demo._cli", "run a pipeline on every interpreter found and compare them"),
}


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def format_doctor(info: RuntimeInfo) -> str:
    """Render the runtime facts as an aligned, human-readable table.

    Args:
        info: The facts, from :func:`ftpipe.runtime_info`.

    Returns:
        Text whose first line is the plain GIL summary, e.g.
        ``"free-threaded build, GIL disabled"``.
    """
    rows = [
        ("python", f"{info.implementation} {info.version}"),
        ("executable", info.executable),
        ("free-threaded build", _yes_no(info.free_threaded)),
        ("GIL enabled now", _yes_no(info.gil_enabled)),
        ("GIL re-enabled by", ", ".join(info.gil_reenabled_by) or "-"),
        ("usable cores", f"{info.usable_cores} of {info.cpu_count}"),
        ("subinterpreters", _yes_no(info.subinterpreters)),
    ]
    rows += [(name, _yes_no(found)) for name, found in info.optional_packages.items()]
    width = max(len(key) for key, _ in rows)
    lines = [info.gil_summary, ""]
    lines += [f"  {key.ljust(width)}  {value}" for key, value in rows]
    if info.interpreters:
        lines += ["", "interpreters on this machine (for side-by-side runs):"]
        label_width = max(len(i.label) for i in info.interpreters)
        version_width = max(len(i.version) for i in info.interpreters)
        for interp in info.interpreters:
            kind = "free-threaded" if interp.free_threaded else "GIL build"
            lines.append(
                f"  {interp.label.ljust(label_width)}  {interp.version.ljust(version_width)}"
                f"  {kind.ljust(13)}  {interp.path}"
            )
    return "\n".join(lines)


def _doctor(args: argparse.Namespace) -> int:
    info = runtime_info(find_others=not args.no_interpreters)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        print(format_doctor(info))
    return 0


def _delegate(command: str, argv: list[str]) -> int:
    module_name, _ = _DELEGATES[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a missing ftpipe module means "not available"; a missing third-party
        # dependency inside it is that module's error to report, so re-raise.
        missing = exc.name or ""
        if not (module_name == missing or module_name.startswith(missing + ".")):
            raise
        print(
            f"ftpipe: '{command}' is not available in this installation"
            f" (module {module_name} is missing)",
            file=sys.stderr,
        )
        return 2
    entry: Callable[[list[str]], int] = module.main
    return int(entry(argv))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ftpipe",
        description="ftpipe: free-threaded-first pipelines and a GIL contention detector.",
    )
    parser.add_argument("--version", action="version", version=f"ftpipe {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    doctor = commands.add_parser(
        "doctor",
        help="show interpreter facts: free-threaded?, GIL on?, which import re-enabled it, cores",
        description="Show what ftpipe knows about this interpreter and the others on this machine.",
    )
    doctor.add_argument("--json", action="store_true", help="print JSON instead of a table")
    doctor.add_argument(
        "--no-interpreters",
        action="store_true",
        help="do not look for other interpreters (faster)",
    )
    doctor.set_defaults(handler=_doctor)
    # Listed for --help only: main() hands their arguments over before argparse runs.
    for name, (_, summary) in _DELEGATES.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The process exit status.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _DELEGATES:
        return _delegate(args[0], args[1:])
    namespace = _parser().parse_args(args)
    handler: Callable[[argparse.Namespace], int] = namespace.handler
    return handler(namespace)


if __name__ == "__main__":
    sys.exit(main())
