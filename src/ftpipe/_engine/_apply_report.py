"""Applying a diagnosis report: each stage's concurrency and executor as the detector advised.

::

    report.json (what diagnostic mode writes) ─read_report─► diagnoses (dicts)
      │   matched by stage name; per diagnosis: the advice for the interpreter in use
      ▼
    apply_report(stages, report) ─► the same StageConfigs, re-validated with the
                                    advised concurrency and executor (for_pipe), and
                                    a warning for everything not applied and why

The engine reads the report as JSON (the detector's documented schema), so it never
imports the detector.  Nothing is silent: a stage of the report that the pipeline
lacks, an inconclusive verdict, advice made on another interpreter, an executor the
stage's function cannot run on, a stage on the user's own executor instance — each is
a ``TuningWarning`` naming the stage.  Stages the report does not know keep their
settings.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._runtime import gil_enabled, is_free_threaded
from ._config import StageConfig, StageKind

__all__ = ["TUNING_ENV", "TuningWarning", "apply_report", "read_report"]

TUNING_ENV = "FTPIPE_TUNING"


class TuningWarning(UserWarning):
    """Part of a diagnosis report was not applied to a pipeline; the message says which and why."""


def read_report(report: Any) -> list[dict[str, Any]]:
    """The diagnoses in ``report``: a path to a JSON report, its parsed document, one
    diagnosis (a dict or an object with ``to_dict()``) or a sequence of them."""
    if isinstance(report, str | os.PathLike):
        path = Path(report)
        try:
            report = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no diagnosis report at {str(path)!r}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{str(path)!r} is not a JSON diagnosis report: {exc}") from None
    if hasattr(report, "to_dict"):
        report = report.to_dict()
    if isinstance(report, Mapping):
        if "diagnoses" in report:
            report = report["diagnoses"]
        elif "verdict" in report:
            report = [report]
        else:
            raise ValueError(
                "a diagnosis report has 'diagnoses' (the report diagnostic mode writes) or is "
                f"one diagnosis (with 'verdict'); got keys {sorted(report)[:8]}"
            )
    if not isinstance(report, Sequence) or isinstance(report, str | bytes):
        raise TypeError(
            "apply_tuning() takes a path to report.json, its parsed document, or diagnoses; "
            f"got {type(report).__name__}"
        )
    out = []
    for item in report:
        d = item.to_dict() if hasattr(item, "to_dict") else item
        if not isinstance(d, Mapping) or "verdict" not in d:
            raise ValueError(f"not a diagnosis: {d!r:.120}")
        out.append(dict(d))
    return out


def _here() -> str:
    return ".".join(map(str, sys.version_info[:2])) + ("t" if is_free_threaded() else "")


def _advice(d: Mapping[str, Any], stage: str) -> tuple[str, int] | str:
    """``(executor, concurrency)`` for the interpreter in use, or why there is none."""
    if d.get("verdict") == "inconclusive":
        return f"stage {stage!r}: the diagnosis is inconclusive; its settings are kept"
    advice = d.get("recommended_executor") or {}
    best = d.get("best_concurrency")
    if not isinstance(best, int) or best < 1 or not advice:
        return f"stage {stage!r}: the diagnosis has no recommendation; its settings are kept"
    made_on, here = d.get("interpreter", ""), _here()
    ft_gil_off = is_free_threaded() and not gil_enabled()
    if made_on == here and (ft_gil_off or not is_free_threaded()):
        return str(advice.get("this_interpreter", "thread")), best
    if ft_gil_off:
        warnings.warn(
            f"stage {stage!r}: the report was made on {made_on or 'another interpreter'}; "
            f"applying its free-threaded advice ({advice.get('free_threaded')}) and the "
            f"concurrency measured there ({best}) on {here}",
            TuningWarning,
            stacklevel=4,
        )
        return str(advice.get("free_threaded", "thread")), best
    return (
        f"stage {stage!r}: the report was made on {made_on or 'another interpreter'}, "
        f"its advice does not hold on {here}{' with the GIL on' if is_free_threaded() else ''}; "
        "diagnose the pipeline on this interpreter (FTPIPE_DIAGNOSTIC_MODE=1)"
    )


def apply_report(stages: Sequence[StageConfig], report: Any, sized: set[str]) -> list[StageConfig]:
    """Return ``stages`` with the report's advice applied; warn about the rest.

    Args:
        stages: The builder's stages.
        report: What ``read_report`` reads.
        sized: Names of the stages whose ``buffer_size`` the user gave (kept as given;
            the others get the default for their new concurrency).
    """
    diagnoses = read_report(report)
    by_stage: dict[str, Mapping[str, Any]] = {}
    for d in diagnoses:
        name = d.get("stage") or ""
        if not name:
            warnings.warn(
                f"a diagnosis of {d.get('function', '?')} names no stage (diagnose() of a "
                "function, not diagnostic mode's report); it is not applied",
                TuningWarning,
                stacklevel=3,
            )
            continue
        by_stage[name] = d
    names = {s.name for s in stages}
    unknown = sorted(set(by_stage) - names)
    if unknown:
        warnings.warn(
            f"the report's stages {unknown} are not in this pipeline (its stages: "
            f"{sorted(names)}); their advice is not applied",
            TuningWarning,
            stacklevel=3,
        )
    out = []
    for stage in stages:
        advised = by_stage.get(stage.name)
        out.append(stage if advised is None else _applied(stage, advised, sized))
    return out


def _applied(stage: StageConfig, d: Mapping[str, Any], sized: set[str]) -> StageConfig:
    if stage.kind is not StageKind.PIPE or stage.fn is None:
        warnings.warn(
            f"stage {stage.name!r} is not a pipe stage; its advice is not applied",
            TuningWarning,
            stacklevel=4,
        )
        return stage
    if stage.executor is not None and not isinstance(stage.executor, str):
        warnings.warn(
            f"stage {stage.name!r} runs on an executor you passed "
            f"({type(stage.executor).__name__}); the report's advice is not applied over it",
            TuningWarning,
            stacklevel=4,
        )
        return stage
    advice = _advice(d, stage.name)
    if isinstance(advice, str):
        warnings.warn(advice, TuningWarning, stacklevel=4)
        return stage
    executor, concurrency = advice
    try:
        return StageConfig.for_pipe(
            stage.fn,
            index=0,
            concurrency=concurrency,
            executor=None if executor == "thread" else executor,
            ordered=stage.ordered,
            name=stage.name,
            on_error=stage.on_error,
            max_failures=stage.max_failures,
            retries=stage.retries,
            buffer_size=stage.buffer_size if stage.name in sized else None,
        )
    except (TypeError, ValueError) as exc:
        warnings.warn(
            f"stage {stage.name!r}: the advice ({executor} x{concurrency}) cannot be applied: "
            f"{exc}; its settings are kept",
            TuningWarning,
            stacklevel=4,
        )
        return stage
