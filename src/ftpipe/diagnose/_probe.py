"""The probe: run in a fresh interpreter per configuration, measure one function, write JSON.

    python [-X gil=0|1] -m ftpipe.diagnose._probe SPEC.json

SPEC.json names the function (``module:qualname``, or a script path for
``__main__``), the pickled inputs, the sweep settings and where to write the
result.  Progress goes to stderr as ``ftpipe-progress: ...`` lines.  The result
always gets written, with a ``status`` saying why there are no points when the
function cannot be imported, the inputs cannot be unpickled, or a call raised.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import pickle
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Any

from .._engine import set_diagnostic_hook
from .._runtime import gil_enabled, gil_reenabled_by, is_free_threaded
from ._records import Configuration, Curve
from ._sweep import PROGRESS, CallFailed, SweepSettings, sweep


def resolve(target: str, main_path: str | None = None) -> Any:
    """Import ``module:qualname``; ``__main__`` functions come from ``main_path`` as ``__mp_main__``.

    Like multiprocessing's spawn start method, the script is imported under another
    name, so its ``if __name__ == "__main__":`` block does not run again.
    """
    module_name, _, qualname = target.partition(":")
    with _no_pipelines_while_importing():
        module = _import(module_name, main_path)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class UnguardedScript(RuntimeError):
    """The function's script built a pipeline while being imported by the probe."""


@contextlib.contextmanager
def _no_pipelines_while_importing() -> Iterator[None]:
    """Make ``build()`` raise during the import, so an unguarded script never runs its pipeline."""

    def refuse(config: object) -> object:
        raise UnguardedScript(
            "importing the function's module built a pipeline; put the script's pipeline code "
            'under `if __name__ == "__main__":` so the function can be imported on its own'
        )

    saved = os.environ.get("FTPIPE_DIAGNOSTIC_MODE")
    os.environ["FTPIPE_DIAGNOSTIC_MODE"] = "1"
    previous = set_diagnostic_hook(refuse)
    try:
        yield
    finally:
        set_diagnostic_hook(previous)
        if saved is None:
            del os.environ["FTPIPE_DIAGNOSTIC_MODE"]
        else:
            os.environ["FTPIPE_DIAGNOSTIC_MODE"] = saved


def _import(module_name: str, main_path: str | None) -> Any:
    if module_name == "__main__":
        if not main_path:
            raise ImportError(
                "the function is defined in __main__ and the script's path is unknown"
            )
        spec = importlib.util.spec_from_file_location("__mp_main__", main_path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the script {main_path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules["__mp_main__"] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(module_name)


def _error(kind: str, exc: BaseException) -> dict[str, Any]:
    # The traceback goes to stderr, whose tail the parent reports if all else fails.
    traceback.print_exception(exc, file=sys.stderr)
    return {"status": kind, "message": f"{type(exc).__name__}: {exc}"}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Carry out one probe described by ``spec``; return its curve as ``Curve.to_dict()``."""
    started = time.perf_counter()
    before = set(sys.modules)
    config = Configuration(**spec["configuration"])
    measured: dict[str, Any] = {"points": ()}
    try:
        fn = resolve(spec["target"], spec.get("main_path"))
    except BaseException as exc:  # noqa: BLE001 - anything the import raises is reported
        measured.update(_error("import-error", exc))
        fn = None
    inputs = None
    if fn is not None:
        try:
            with open(spec["inputs"], "rb") as f:
                inputs = pickle.load(f)
        except BaseException as exc:  # noqa: BLE001
            measured.update(_error("input-error", exc))
    if fn is not None and inputs is not None:

        def progress(line: str) -> None:
            print(PROGRESS + line, file=sys.stderr, flush=True)

        try:
            measured["points"] = tuple(
                sweep(fn, inputs, SweepSettings.from_dict(spec["settings"]), progress)
            )
        except CallFailed as exc:
            measured.update(_error("error", exc.error), message=str(exc))
        except Exception as exc:  # noqa: BLE001
            measured.update(_error("error", exc))
    curve = Curve.of(
        config,
        version=".".join(map(str, sys.version_info[:3])),
        free_threaded=is_free_threaded(),
        gil_enabled=gil_enabled(),
        gil_reenabled_by=tuple(gil_reenabled_by()),
        uses_numpy=bool({"numpy", "torch"} & (set(sys.modules) - before)),
        seconds=time.perf_counter() - started,
        **measured,
    )
    return curve.to_dict()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0]) as f:
        spec = json.load(f)
    result = run(spec)
    tmp = spec["result"] + ".part"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, spec["result"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
