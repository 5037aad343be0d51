"""Running one probe subprocess per configuration, one after another.

    parent                                   probe (python [-X gil=N] -m ftpipe.diagnose._probe)
    run_probe(config) -- spec.json ------->  import fn, load inputs, sweep
                      <- ftpipe-progress --  (stderr, one line per round)
                      <- result.json -------  Curve.to_dict()
    Curve.from_dict(result)

Probes never run side by side, so they do not compete for the cores they measure.
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
from dataclasses import asdict, replace
from pathlib import Path

from ._records import Configuration, Curve
from ._sweep import PROGRESS, SweepSettings

__all__ = ["child_environment", "only_ftpipe_path", "run_probe"]


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
        package = Path(__file__).resolve().parents[1]  # ftpipe/, this file's grandparent
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

    def failed(status: str, message: str) -> Curve:
        return Curve.of(
            config, status=status, message=message, seconds=time.perf_counter() - started
        )

    with tempfile.TemporaryDirectory(prefix="ftpipe-probe-") as tmp:
        spec_path, result_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "result.json")
        spec = {
            "configuration": asdict(config),
            "target": target,
            "main_path": main_path,
            "inputs": inputs_path,
            "result": result_path,
            "settings": settings.to_dict(),
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
            return failed("crashed", f"could not start {config.executable}: {exc}")
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
                return failed("timeout", f"the probe ran past {timeout:.0f} s and was stopped")
            why = "\n".join(tail[-5:]) or f"exit status {code}"
            return failed("crashed", f"the probe exited without a result: {why}")
        curve = Curve.from_dict(json.loads(Path(result_path).read_text()))
    # The probe's own clock misses the interpreter's start-up: report the time seen here.
    return replace(curve, seconds=time.perf_counter() - started)
