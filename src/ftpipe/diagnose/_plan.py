"""Which interpreter configurations to compare.

On a free-threaded interpreter: itself as it starts by default (GIL off) and with
``-X gil=1`` (same binary, same packages: only the GIL differs) plus a stock GIL
build when one is found.  When an import re-enables the GIL in the default run,
``forced_off`` gives the ``-X gil=0`` rerun that still measures the code without it.
On a GIL build: itself, plus a free-threaded interpreter (both GIL modes)
when one is found.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from .._runtime import InterpreterInfo, find_interpreters, is_free_threaded
from ._records import Configuration

__all__ = ["HOW_TO_GET_FT", "configurations_for", "forced_off", "plan"]

HOW_TO_GET_FT = (
    "a free-threaded interpreter (python3.13t); run tools/find-pythons.sh (builds CPython 3.13 "
    "with --disable-gil into ~/.cache/ftpipe), or install one with `uv python install 3.13t` "
    "or pyenv (3.13t)"
)


def forced_off(config: Configuration) -> Configuration:
    """The ``-X gil=0`` variant of a no-GIL configuration whose imports turned the GIL back on."""
    return replace(config, label=f"{config.label} gil=0 forced", gil=0)


def _short(version: str) -> str:
    return ".".join(version.split(".")[:2])


def configurations_for(info: InterpreterInfo, executable: str | None = None) -> list[Configuration]:
    """The configurations one interpreter gives: a free-threaded build as it starts by
    default (GIL off) and with ``-X gil=1``; a GIL build as itself.

    ``executable`` replaces ``info.path`` (this interpreter as ``sys.executable`` names it).
    """
    exe = executable or info.path
    if info.free_threaded:
        # The no-GIL run uses the build's default (GIL off unless an import turns it back
        # on), which is what users get; -X gil=0 would hide such an import.
        return [
            Configuration(info.label, "no-gil", exe, info.version, True, None),
            Configuration(f"{info.label} gil=1", "gil", exe, info.version, True, 1),
        ]
    return [Configuration(f"{info.label} GIL build", "gil-build", exe, info.version, False, None)]


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split(".") if x.isdigit())


def plan() -> tuple[tuple[Configuration, ...], str]:
    """Return the configurations for ``configurations="auto"`` and what is missing ("" if none)."""
    here = InterpreterInfo(
        sys.executable, ".".join(map(str, sys.version_info[:3])), is_free_threaded()
    )
    mine = os.path.realpath(sys.executable)
    others = [i for i in find_interpreters() if os.path.realpath(i.path) != mine]
    configs = configurations_for(here, sys.executable)
    want_ft = not here.free_threaded
    pool = [i for i in others if i.free_threaded == want_ft]
    # Prefer the same minor version (the cleanest comparison), then the newest.
    pool.sort(
        key=lambda i: (_short(i.version) == _short(here.version), _version_key(i.version)),
        reverse=True,
    )
    if pool:
        configs += configurations_for(pool[0])
    missing = HOW_TO_GET_FT if want_ft and not pool else ""
    return tuple(configs), missing
