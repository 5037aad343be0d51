"""Build-time checks: can this callable cross to a subinterpreter or a child process?

Both cross a function *by name*: pickle writes ``module`` + ``qualname`` and the
other side imports it.  So lambdas, functions nested in other functions, and
functions of the ``__main__`` script cannot cross to a subinterpreter (whose
``__main__`` is empty); a child process can still import a script's ``__main__``
through multiprocessing, but not an interactive session's.
"""

from __future__ import annotations

import functools
import importlib
import pickle
import sys
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

__all__ = [
    "check_importable",
    "check_picklable",
    "modules_refusing_subinterpreters",
    "pickle_config",
]

# Extensions known to refuse loading in an isolated subinterpreter (single-phase
# init or per-process state).  A stage whose module imports one of them fails
# at build time instead of on the first item.
_REFUSE_SUBINTERPRETERS = frozenset(
    {"numpy", "torch", "pandas", "scipy", "sklearn", "cv2", "PIL", "pyarrow", "tensorflow", "jax"}
)


def _target(fn: Callable[..., Any]) -> Callable[..., Any]:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def _where(stage: str) -> str:
    return f"stage {stage!r}" if stage else "callable"


def check_picklable(fn: Callable[..., Any], stage: str, *, target: str) -> None:
    """Raise TypeError naming ``stage`` unless ``fn`` pickles (by reference)."""
    inner = _target(fn)
    qualname = getattr(inner, "__qualname__", "")
    module = getattr(inner, "__module__", None)
    why = ""
    if qualname == "<lambda>" or qualname.endswith(".<lambda>"):
        why = "a lambda has no importable name; define it with `def` at module top level"
    elif "<locals>" in qualname:
        why = (
            "a function defined inside another function (a closure) has no importable "
            "name; move it to module top level and pass data through functools.partial"
        )
    elif module == "__main__" and not getattr(sys.modules.get("__main__"), "__file__", None):
        why = "it was defined in an interactive session; put it in a module"
    if why:
        raise TypeError(f"{_where(stage)}: {fn!r} cannot be sent to {target}: {why}")
    try:
        pickle.dumps(fn, protocol=5)
    except Exception as exc:
        raise TypeError(
            f"{_where(stage)}: {fn!r} cannot be sent to {target}: it is not picklable "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def check_importable(fn: Callable[..., Any], stage: str) -> None:
    """Raise TypeError naming ``stage`` unless a subinterpreter can import ``fn`` by name."""
    target = "a subinterpreter"
    inner = _target(fn)
    if getattr(inner, "__module__", None) == "__main__":
        raise TypeError(
            f"{_where(stage)}: {fn!r} is defined in __main__ (the running script); a "
            "subinterpreter has its own empty __main__ and imports functions by module "
            "and qualified name, so move it into an importable module"
        )
    check_picklable(fn, stage, target=target)
    if not callable(inner) or isinstance(inner, type):
        return
    if hasattr(inner, "__qualname__") and hasattr(inner, "__module__"):
        found = _resolve(inner.__module__, inner.__qualname__)
        if found is not inner and getattr(found, "__func__", None) is not getattr(
            inner, "__func__", inner
        ):
            raise TypeError(
                f"{_where(stage)}: {fn!r} cannot be sent to {target}: importing "
                f"{inner.__module__}:{inner.__qualname__} does not give back this object"
            )
    refused = modules_refusing_subinterpreters(inner)
    if refused:
        raise TypeError(
            f"{_where(stage)}: {fn!r} lives in module {getattr(inner, '__module__', '?')!r}, "
            f"which imports {', '.join(refused)}; {refused[0]} does not support loading in "
            "subinterpreters. Use executor='process' (or executor='thread' on a "
            "free-threaded 3.13t build)"
        )


def _resolve(module: str, qualname: str) -> Any:
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj


def modules_refusing_subinterpreters(fn: Callable[..., Any]) -> list[str]:
    """Return the known subinterpreter-refusing packages the module of ``fn`` imports."""
    module = sys.modules.get(getattr(_target(fn), "__module__", "") or "")
    if module is None:
        return []
    found = set()
    for value in list(vars(module).values()):
        name = getattr(value, "__name__", None) if isinstance(value, type(sys)) else None
        if name is None:
            name = getattr(value, "__module__", None)
        if isinstance(name, str) and name.partition(".")[0] in _REFUSE_SUBINTERPRETERS:
            found.add(name.partition(".")[0])
    return sorted(found)


def pickle_config(config: Any) -> bytes:
    """Pickle a pipeline's config for the pipeline subprocess, or say what cannot move.

    Raises:
        TypeError: A stage executor is an instance, a stage function does not
            pickle by reference, or the source does not pickle (a generator).
    """
    for stage in config.stages:
        if isinstance(stage.executor, Executor):
            raise TypeError(
                f"stage {stage.name!r}: a user-supplied executor ({type(stage.executor).__name__}) "
                "cannot move into the pipeline subprocess; pass a kind name instead "
                "('thread', 'process', 'interpreter')"
            )
        if stage.fn is not None:
            check_picklable(stage.fn, stage.name, target="the pipeline subprocess")
    try:
        pickle.dumps(config.source, protocol=5)
    except Exception as exc:
        raise TypeError(
            f"the source ({type(config.source).__name__}) cannot be sent to the pipeline "
            f"subprocess: {type(exc).__name__}: {exc}. Pass a list, a range or an iterable "
            "object whose class is importable (generators cannot be pickled)"
        ) from exc
    return pickle.dumps(config, protocol=5)
