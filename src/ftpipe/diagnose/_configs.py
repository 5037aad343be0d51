"""Interpreter configurations to compare, and running one probe subprocess per configuration.

On a free-threaded interpreter: itself as it starts by default (GIL off) and with
``-X gil=1`` (same binary, same packages: only the GIL differs) plus a stock GIL
build when one is found.  When an import re-enables the GIL in the default run,
``forced_off`` gives the ``-X gil=0`` rerun that still measures the code without it.
On a GIL build: itself, plus a free-threaded interpreter (both GIL modes)
when one is found.  Probes run one after another, never side by side, so they
do not compete for the cores they measure.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .._runtime import InterpreterInfo, find_interpreters, is_free_threaded
from ._model import Curve, Point
from ._sweep import PROGRESS, SweepSettings

__all__ = [
    "Configuration",
    "child_environment",
    "configurations_for",
    "forced_off",
    "only_ftpipe_path",
    "plan",
    "run_probe",
]

HOW_TO_GET_FT = (
    "a free-threaded interpreter (python3.13t); run tools/find-pythons.sh (builds CPython 3.13 "
    "with --disable-gil into ~/.cache/ftpipe), or install one with `uv python install 3.13t` "
    "or pyenv (3.13t)"
)


@dataclass(frozen=True)
class Configuration:
    """One way to start an interpreter for a probe.

    Attributes:
        label: Shown in reports: ``"3.13t"`` (default: GIL off), ``"3.13t gil=1"``,
            ``"3.13t gil=0 forced"``, ``"3.13 GIL build"``.
        role: ``"no-gil"``, ``"gil"`` (free-threaded binary, GIL forced on) or ``"gil-build"``.
        executable: The binary (a venv's ``python`` keeps the venv's packages).
        version: ``"3.13.5"``.
        free_threaded: Built with ``--disable-gil``.
        gil: The ``-X gil=`` value, or None on GIL builds.
    """

    label: str
    role: str
    executable: str
    version: str
    free_threaded: bool
    gil: int | None

    @property
    def argv(self) -> list[str]:
        flags = ["-X", f"gil={self.gil}"] if self.gil is not None else []
        return [self.executable, *flags, "-m", "ftpipe.diagnose._probe"]


def forced_off(config: Configuration) -> Configuration:
    """The ``-X gil=0`` variant of a no-GIL configuration whose imports turned the GIL back on."""
    return replace(config, label=f"{config.label} gil=0 forced", gil=0)


def _short(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _for(info: InterpreterInfo, executable: str | None = None) -> list[Configuration]:
    exe = executable or info.path
    if info.free_threaded:
        # The no-GIL run uses the build's default (GIL off unless an import turns it back
        # on), which is what users get; -X gil=0 would hide such an import.
        return [
            Configuration(info.label, "no-gil", exe, info.version, True, None),
            Configuration(f"{info.label} gil=1", "gil", exe, info.version, True, 1),
        ]
    return [Configuration(f"{info.label} GIL build", "gil-build", exe, info.version, False, None)]


def configurations_for(info: InterpreterInfo, executable: str | None = None) -> list[Configuration]:
    """The configurations one interpreter gives: a free-threaded build as it starts by
    default (GIL off) and with ``-X gil=1``; a GIL build as itself.

    ``executable`` replaces ``info.path`` (this interpreter as ``sys.executable`` names it).
    """
    return _for(info, executable)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split(".") if x.isdigit())


def plan() -> tuple[tuple[Configuration, ...], str]:
    """Return the configurations for ``configurations="auto"`` and what is missing ("" if none)."""
    here = InterpreterInfo(
        sys.executable, ".".join(map(str, sys.version_info[:3])), is_free_threaded()
    )
    mine = os.path.realpath(sys.executable)
    others = [i for i in find_interpreters() if os.path.realpath(i.path) != mine]
    configs = _for(here, sys.executable)
    want_ft = not here.free_threaded
    pool = [i for i in others if i.free_threaded == want_ft]
    # Prefer the same minor version (the cleanest comparison), then the newest.
    pool.sort(
        key=lambda i: (_short(i.version) == _short(here.version), _version_key(i.version)),
        reverse=True,
    )
    if pool:
        configs += _for(pool[0])
    missing = HOW_TO_GET_FT if want_ft and not pool else ""
    return tuple(configs), missing


_only_ftpipe_lock = threading.Lock()  # guards _only_ftpipe_dir
_only_ftpipe_dir: str | None = None


def only_ftpipe_path() -> str:
    """A directory holding ftpipe and nothing else, for another interpreter's ``PYTHONPATH``.

    Not the package's parent: for an installed ftpipe that is site-packages, and
    another interpreter would import this one's numpy (built for another ABI) from it
    instead of its own.  The directory holds a link to the package (a copy where links
    cannot be made: ftpipe is pure Python); made once per process, removed at exit.
    """
    global _only_ftpipe_dir
    with _only_ftpipe_lock:
        if _only_ftpipe_dir is not None and os.path.isdir(_only_ftpipe_dir):
            return _only_ftpipe_dir
        import ftpipe

        package = Path(ftpipe.__file__).resolve().parent
        directory = tempfile.mkdtemp(prefix="ftpipe-path-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        link = Path(directory) / "ftpipe"
        try:
            link.symlink_to(package, target_is_directory=True)
        except OSError:
            shutil.copytree(package, link, ignore=shutil.ignore_patterns("__pycache__"))
        _only_ftpipe_dir = directory
        return directory


def child_environment() -> dict[str, str]:
    """This process's environment less what another interpreter run must not inherit.

    Each run chooses its own GIL mode (``PYTHON_GIL`` would override ``-X gil=``), and
    diagnostic mode would turn the child's own pipelines into profilers.
    """
    return {
        k: v for k, v in os.environ.items() if k not in ("PYTHON_GIL", "FTPIPE_DIAGNOSTIC_MODE")
    }


def _pythonpath() -> str:
    """ftpipe alone plus the caller's non-installed sys.path entries (its project, tests)."""
    skip = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    entries = [only_ftpipe_path()]
    for entry in sys.path:
        path = os.path.abspath(entry or os.getcwd())
        if (
            path in skip
            or "site-packages" in path
            or "dist-packages" in path
            or path.endswith(".zip")
        ):
            continue
        if path.startswith(sys.base_prefix + os.sep + "lib"):
            continue
        entries.append(path)
    return os.pathsep.join(dict.fromkeys(entries))


def run_probe(
    config: Configuration,
    target: str,
    inputs_path: str,
    settings: SweepSettings,
    *,
    main_path: str | None = None,
    timeout: float = 120.0,
    progress: Callable[[str], None] | None = None,
) -> Curve:
    """Run one probe subprocess and return its curve (with a status when it failed)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ftpipe-probe-") as tmp:
        spec_path, result_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "result.json")
        spec = {
            "target": target,
            "main_path": main_path,
            "inputs": inputs_path,
            "result": result_path,
            "settings": {**settings.__dict__, "levels": list(settings.levels)},
        }
        Path(spec_path).write_text(json.dumps(spec))
        env = child_environment()
        env["PYTHONPATH"] = _pythonpath()
        env["FTPIPE_DIAGNOSE_PROBE"] = "1"
        tail: list[str] = []
        try:
            proc = subprocess.Popen(
                [*config.argv, spec_path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                errors="replace",
            )
        except OSError as exc:
            return _failed(
                config, "crashed", f"could not start {config.executable}: {exc}", started
            )
        # A timer kills a hung probe; closing its stderr then ends the read loop below.
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.startswith(PROGRESS):
                    if progress:
                        progress(f"{config.label}: {line[len(PROGRESS) :].rstrip()}")
                else:
                    tail = (tail + [line.rstrip()])[-15:]
            code = proc.wait()
        finally:
            killer.cancel()
        if not os.path.exists(result_path):
            if code in (-9, 137):
                return _failed(
                    config,
                    "timeout",
                    f"the probe ran past {timeout:.0f} s and was stopped",
                    started,
                )
            why = "\n".join(tail[-5:]) or f"exit status {code}"
            return _failed(config, "crashed", f"the probe exited without a result: {why}", started)
        data: dict[str, Any] = json.loads(Path(result_path).read_text())
    return Curve(
        label=config.label,
        role=config.role,
        executable=config.executable,
        version=data["version"],
        free_threaded=data["free_threaded"],
        gil_enabled=data["gil_enabled"],
        gil_reenabled_by=tuple(data["gil_reenabled_by"]),
        status=data["status"],
        message=data["message"],
        points=tuple(Point.from_dict(p) for p in data["points"]),
        seconds=time.perf_counter() - started,
        uses_numpy=data["uses_numpy"],
    )


def _failed(config: Configuration, status: str, message: str, started: float) -> Curve:
    return Curve(
        config.label,
        config.role,
        config.executable,
        config.version,
        config.free_threaded,
        config.gil != 0,
        status=status,
        message=message,
        seconds=time.perf_counter() - started,
    )
