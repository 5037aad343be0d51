"""Facts about the running interpreter and the other interpreters on this machine.

The lowest layer of ftpipe: everything else asks here whether the build is
free-threaded, whether the GIL is on right now, which import turned it back on,
how many cores this process may use, and which other interpreter
configurations (free-threaded, stock GIL builds) can be started for a
side-by-side comparison.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import types
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "InterpreterInfo",
    "RuntimeInfo",
    "find_interpreters",
    "gil_enabled",
    "gil_reenabled_by",
    "is_free_threaded",
    "runtime_info",
    "usable_cores",
]


def is_free_threaded() -> bool:
    """Return True when this interpreter was built with ``--disable-gil``."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def gil_enabled() -> bool:
    """Return True when the GIL is enabled right now (always True on GIL builds)."""
    probe = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


def usable_cores() -> int:
    """Return the number of cores this process may run on (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# --- which import re-enabled the GIL -------------------------------------------------
#
# CPython 3.13t re-enables the GIL when it loads an extension module that does not
# declare free-threading support, and says so once with a RuntimeWarning naming the
# module.  Two watchers keep that name:
#
# * an import watcher: a meta-path finder that hands extension modules a loader
#   noticing the GIL go from off to on while the module is created.  It sees the
#   import even when warnings are ignored, turned into errors, or recorded by
#   ``warnings.catch_warnings(record=True)`` (pytest does that around every test,
#   which bypasses ``warnings.showwarning``);
# * a ``warnings.showwarning`` wrapper (the documented hook), which reads the module
#   name from CPython's message when the warning is shown.

_GIL_WARNING = re.compile(r"GIL\) has been enabled to load module '([^']+)'")
# Written from whichever thread imports; guarded by _watch_lock, readers take a copy.
_reenabled_by: list[str] = []
_watch_lock = threading.Lock()
_watch_installed = False


def _note_reenabled_by(module: str) -> None:
    with _watch_lock:
        if module not in _reenabled_by:
            _reenabled_by.append(module)


class _GilWatchingLoader(importlib.machinery.ExtensionFileLoader):
    """An extension loader that notices when creating its module turned the GIL on."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        before = gil_enabled()
        try:
            return super().create_module(spec)
        finally:
            # Also when the import failed: with -W error the warning is raised
            # after the GIL was already turned on for good.
            if not before and gil_enabled():
                _note_reenabled_by(spec.name)


class _GilWatchingFinder(importlib.abc.MetaPathFinder):
    """Finds specs with the other finders and swaps in a GIL-watching extension loader."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if gil_enabled():
            return None  # Nothing left to notice: let the import system carry on.
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: importlib.machinery.ModuleSpec | None = find(fullname, path, target)
            if spec is None:
                continue
            loader = spec.loader
            # Exact type only: a subclass may be someone else's hook we must not bypass.
            if type(loader) is importlib.machinery.ExtensionFileLoader:
                spec.loader = _GilWatchingLoader(loader.name, loader.path)
            return spec
        return None


def _install_gil_watch() -> None:
    global _watch_installed
    with _watch_lock:
        if _watch_installed or not is_free_threaded():
            return
        previous = warnings.showwarning

        def showwarning(
            message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any
        ) -> None:
            match = _GIL_WARNING.search(str(message))
            if match:
                _note_reenabled_by(match.group(1))
            previous(message, category, *args, **kwargs)

        warnings.showwarning = showwarning
        sys.meta_path.insert(0, _GilWatchingFinder())
        _watch_installed = True


def gil_reenabled_by() -> tuple[str, ...]:
    """Return the modules whose import re-enabled the GIL on a free-threaded build.

    Only imports after ftpipe was imported are seen; when the GIL is on and no
    module was seen, the culprit was imported earlier (or ``PYTHON_GIL=1`` /
    ``-X gil=1`` forced it), and :func:`runtime_info` says so.  Always empty on
    GIL builds.
    """
    with _watch_lock:
        return tuple(_reenabled_by)


# --- other interpreters on this machine ----------------------------------------------


@dataclass(frozen=True)
class InterpreterInfo:
    """One interpreter binary found on this machine.

    Attributes:
        path: Absolute path of the executable.
        version: ``"3.13.5"`` style version string.
        free_threaded: Built with ``--disable-gil``.
    """

    path: str
    version: str
    free_threaded: bool

    @property
    def label(self) -> str:
        """Short name such as ``3.13t`` or ``3.12``."""
        major_minor = ".".join(self.version.split(".")[:2])
        return major_minor + ("t" if self.free_threaded else "")


_PROBE = (
    "import sys, sysconfig, json; print(json.dumps([sys.executable, "
    "'%d.%d.%d' % sys.version_info[:3], bool(sysconfig.get_config_var('Py_GIL_DISABLED'))]))"
)


def _candidate_paths() -> Iterable[str]:
    names = ["python3.13t", "python3.14t", "python3.11", "python3.12", "python3.13", "python3.14"]
    for name in names:
        found = shutil.which(name)
        if found:
            yield found
    cache = Path(os.environ.get("FTPIPE_CACHE", Path.home() / ".cache" / "ftpipe"))
    for p in sorted(cache.glob("cpython-*/bin/python3.1*")):
        if re.fullmatch(r"python3\.\d+t?", p.name):
            yield str(p)
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    for root in filter(None, roots):
        for p in sorted(Path(root).glob("versions/3.1[1-9]*/bin/python3.1*")):
            if re.fullmatch(r"python3\.\d+t?", p.name):
                yield str(p)
    for p in sorted((Path.home() / ".local/share/uv/python").glob("cpython-3.1*/bin/python3.1*")):
        if re.fullmatch(r"python3\.\d+t?", p.name):
            yield str(p)


def _describe(path: str) -> InterpreterInfo | None:
    try:
        out = subprocess.run(
            [path, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=20, check=True
        ).stdout
        executable, version, free_threaded = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return InterpreterInfo(os.path.realpath(executable or path), version, bool(free_threaded))


_found: tuple[InterpreterInfo, ...] | None = None
_found_lock = threading.Lock()


def find_interpreters(*, refresh: bool = False) -> tuple[InterpreterInfo, ...]:
    """Return the CPython 3.11+ interpreters found on PATH, pyenv, uv and ftpipe's cache.

    One entry per distinct binary, this interpreter included; the result is
    cached for the life of the process unless ``refresh`` is true.
    """
    global _found
    with _found_lock:
        if _found is not None and not refresh:
            return _found
        # Keyed by file identity: symlinks, venv launchers and hard links (a 3.13t
        # install has python3.13 and python3.13t as one file) are one interpreter.
        seen: dict[tuple[int, int], InterpreterInfo] = {}
        for path in dict.fromkeys([sys.executable, *_candidate_paths()]):
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            info = _describe(path)
            # A pyenv shim is a script: only the binary it ran tells it apart.
            if info is not None and all(info.path != i.path for i in seen.values()):
                seen[key] = info
        _found = tuple(seen.values())
        return _found


# --- the summary ---------------------------------------------------------------------


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _subinterpreters_supported() -> bool:
    if sys.version_info >= (3, 14):
        return _importable("concurrent.interpreters")
    return sys.version_info >= (3, 13) and _importable("_interpreters")


@dataclass(frozen=True)
class RuntimeInfo:
    """A snapshot of the facts ``ftpipe doctor`` prints.

    Attributes:
        implementation: ``"cpython"``, ``"pypy"``...
        version: ``"3.13.5"`` style version.
        executable: ``sys.executable``.
        free_threaded: Built with ``--disable-gil``.
        gil_enabled: The GIL is on right now.
        gil_reenabled_by: Modules whose import re-enabled the GIL.
        gil_summary: One plain sentence about the GIL.
        usable_cores: Cores this process may run on.
        cpu_count: Cores in the machine.
        subinterpreters: Isolated subinterpreters are usable here.
        optional_packages: ``{"numpy": True, ...}``: importable or not.
        interpreters: Other interpreter configurations found on this machine.
    """

    implementation: str
    version: str
    executable: str
    free_threaded: bool
    gil_enabled: bool
    gil_reenabled_by: tuple[str, ...]
    gil_summary: str
    usable_cores: int
    cpu_count: int
    subinterpreters: bool
    optional_packages: dict[str, bool]
    interpreters: tuple[InterpreterInfo, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary with the field names above."""
        data = asdict(self)
        data["gil_reenabled_by"] = list(self.gil_reenabled_by)
        data["interpreters"] = [asdict(i) | {"label": i.label} for i in self.interpreters]
        return data


def _gil_summary(free_threaded: bool, enabled: bool, culprits: tuple[str, ...]) -> str:
    if not free_threaded:
        return "GIL build: the GIL is always enabled"
    if not enabled:
        return "free-threaded build, GIL disabled"
    if culprits:
        return "free-threaded build, GIL re-enabled by importing " + ", ".join(culprits)
    # sys.flags.gil is 1 for PYTHON_GIL=1 or -X gil=1 (None when unset); it only
    # exists on 3.13+, hence getattr.
    if getattr(sys.flags, "gil", None) == 1:
        return "free-threaded build, GIL forced on (PYTHON_GIL=1 or -X gil=1)"
    return "free-threaded build, GIL enabled (by a module imported before ftpipe)"


def runtime_info(*, find_others: bool = True) -> RuntimeInfo:
    """Collect the facts about this interpreter (and, optionally, the others found)."""
    free_threaded = is_free_threaded()
    enabled = gil_enabled()
    culprits = gil_reenabled_by()
    return RuntimeInfo(
        implementation=sys.implementation.name,
        version=".".join(map(str, sys.version_info[:3])),
        executable=sys.executable,
        free_threaded=free_threaded,
        gil_enabled=enabled,
        gil_reenabled_by=culprits,
        gil_summary=_gil_summary(free_threaded, enabled, culprits),
        usable_cores=usable_cores(),
        cpu_count=os.cpu_count() or 1,
        subinterpreters=_subinterpreters_supported(),
        optional_packages={
            m: _importable(m) for m in ("numpy", "torch", "distributed", "matplotlib")
        },
        interpreters=find_interpreters() if find_others else (),
    )


_install_gil_watch()
