"""Which interpreter configurations the demo compares, and the environment it starts them in.

Not the detector's ``plan()``, on purpose: ``plan()`` compares the running
interpreter with one counterpart, while the demo's table has a column for every
stock GIL build found, puts the free-threaded pair first whichever interpreter runs
the demo, and takes ``--python`` interpreters.  What each interpreter contributes
(its GIL modes, roles and labels) does come from the detector's
``configurations_for``, and what a child must not inherit from ``child_environment``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace

from .._runtime import InterpreterInfo, _describe, find_interpreters, is_free_threaded
from ..diagnose import Configuration
from ..diagnose._launch import child_environment, only_ftpipe_path
from ..diagnose._plan import HOW_TO_GET_FT, configurations_for

__all__ = ["NO_FREE_THREADED", "child_env", "configurations", "has_numpy"]

# The note the demo ends with when no configuration is free-threaded.
NO_FREE_THREADED = (
    "No free-threaded Python (3.13t) was found, so the GIL-off columns are missing: the demo "
    f"needs {HOW_TO_GET_FT}. Then run the demo again."
)


def _version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def _given(path: str) -> InterpreterInfo | None:
    """The interpreter at ``path``, named by that path rather than the binary it links to.

    ``find_interpreters`` resolves links to tell binaries apart; a virtual environment's
    ``python`` links to its base interpreter, and only the link starts it with the
    environment's packages (numpy, for the numpy rows).
    """
    info = _describe(path)
    return None if info is None else replace(info, path=os.path.abspath(path))


def _version_key(info: InterpreterInfo) -> tuple[int, ...]:
    return tuple(int(x) for x in info.version.split(".") if x.isdigit())


def _labelled(info: InterpreterInfo) -> list[Configuration]:
    # "3.13 GIL", not the detector's "3.13 GIL build": the demo's table has a column per
    # stock build found, which short headers keep within a terminal's width, and its
    # JSON and page keep the names they have always had.
    return [
        replace(c, label=f"{info.label} GIL") if c.role == "gil-build" else c
        for c in configurations_for(info)
    ]


def configurations(extra: Sequence[str] = (), *, quick: bool = False) -> list[Configuration]:
    """This interpreter, a free-threaded one (GIL off and on), and the stock GIL builds found.

    ``extra`` paths replace a found interpreter of the same version and kind (a venv
    with numpy instead of a bare build) or are added.  In quick mode only one stock GIL
    build is kept (the free-threaded one's minor version, else the newest), plus this
    interpreter when it is a GIL build.

    Raises:
        ValueError: An ``extra`` path is not a runnable Python interpreter.
    """
    here = InterpreterInfo(sys.executable, _version(), is_free_threaded())
    found: dict[str, InterpreterInfo] = {}  # label -> interpreter; this one wins its label
    for info in [here, *find_interpreters()]:
        found.setdefault(info.label, info)
    for path in extra:
        given = _given(path)
        if given is None:
            raise ValueError(f"--python {path}: not a runnable Python interpreter")
        if given.label == here.label and os.path.realpath(path) != os.path.realpath(here.path):
            print(
                f"ftpipe demo: --python {path} replaces this interpreter ({sys.executable})",
                file=sys.stderr,
            )
        found[given.label] = given
    threaded = sorted(
        (i for i in found.values() if i.free_threaded),
        key=lambda i: (i.label == here.label, _version_key(i)),
        reverse=True,
    )
    stock = sorted(
        (i for i in found.values() if not i.free_threaded), key=_version_key, reverse=True
    )
    if threaded:
        # Same minor version first (a stock build's label is the free-threaded one's
        # without the "t"): the detector measures the free-threading tax against the
        # first stock build, and 3.13t vs 3.13 is the clean comparison.
        same_minor = threaded[0].label.removesuffix("t")
        stock.sort(key=lambda i: i.label == same_minor, reverse=True)
    if quick:
        # The newest (or same-minor) stock build, and this interpreter when it is one.
        stock = [i for n, i in enumerate(stock) if n == 0 or i is found.get(here.label)]
    return [c for info in [*threaded[:1], *stock] for c in _labelled(info)]


# Written by the demo's one thread (the runner and the report it hands over to); a
# race would only ask an interpreter twice, so no lock.
_numpy_cache: dict[str, bool] = {}


def has_numpy(executable: str) -> bool:
    """Whether ``import numpy`` works in that interpreter (asked once per binary)."""
    if executable not in _numpy_cache:
        try:
            done = subprocess.run(
                [executable, "-c", "import numpy"],
                capture_output=True,
                timeout=60,
                env=child_env(),
            )
            _numpy_cache[executable] = done.returncode == 0
        except (OSError, subprocess.SubprocessError):
            _numpy_cache[executable] = False
    return _numpy_cache[executable]


def child_env() -> dict[str, str]:
    """The detector's child environment, ftpipe alone first on ``PYTHONPATH``.

    ftpipe alone goes on the path, not its parent directory: for an installed ftpipe that
    is this interpreter's site-packages, whose numpy would shadow the other one's.  The
    rest of ``PYTHONPATH`` stays as it was; unlike the detector's probes, which add this
    process's ``sys.path`` so the user's module imports, the demo's children import
    only ftpipe's own modules.
    """
    env = child_environment()
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (only_ftpipe_path(), env.get("PYTHONPATH", "")) if p
    )
    return env
