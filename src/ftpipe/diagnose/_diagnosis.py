"""What the contention detector found for one function: the :class:`Diagnosis`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._records import SCHEMA_VERSION, Curve, ExecutorAdvice, ExecutorTrial, Verdict
from ._report import write_html

__all__ = ["Diagnosis"]


@dataclass(frozen=True)
class Diagnosis:
    """What the contention detector found for one function.

    Attributes:
        function: ``module:qualname`` (or the repr of an unaddressable callable).
        verdict: The cause, from the fixed vocabulary of :class:`Verdict`.
        explanation: One plain paragraph with the numbers behind the verdict.
        curves: One per interpreter configuration tried.
        best_concurrency: Fewest workers reaching (within 5 %) the best throughput
            with the recommended executor on this interpreter.
        recommended_executor: Executor advice here and on a free-threaded build.
        gil_reenabled_by: Modules that re-enabled the GIL on the free-threaded build.
        limited: Some configuration needed for a full verdict was missing.
        missing: What was missing and how to get it (empty when not limited).
        notes: Further remarks (unstable figures, in-process only, ...).
        usable_cores: Cores the probes could use.
        seconds: Time the whole diagnosis took.
        interpreter: The interpreter the diagnosis ran in (``"3.13t"``...).
        parallel_capacity: What ``capacity_level`` independent processes spinning
            pure Python got together on this machine during the diagnosis, in units
            of one alone (the ideal speedup the curves were judged against; ``None``
            where it was not measured).
        capacity_level: How many processes ``parallel_capacity`` ran (0: not measured).
        executor_trials: The function run through a pipeline on each executor in the
            diagnosing process; the recommendation is the fastest of them (empty where
            the verdict was inconclusive or there is one core).
    """

    function: str
    verdict: Verdict
    explanation: str
    curves: tuple[Curve, ...]
    best_concurrency: int
    recommended_executor: ExecutorAdvice
    gil_reenabled_by: tuple[str, ...] = ()
    limited: bool = False
    missing: str = ""
    notes: tuple[str, ...] = ()
    usable_cores: int = 1
    seconds: float = 0.0
    interpreter: str = ""
    stage: str = ""
    parallel_capacity: float | None = None
    capacity_level: int = 0
    executor_trials: tuple[ExecutorTrial, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready document; ``"verdict"`` holds the kebab-case label."""
        return {
            "schema": SCHEMA_VERSION,
            "function": self.function,
            "stage": self.stage,
            "verdict": self.verdict.value,
            "explanation": self.explanation,
            "best_concurrency": self.best_concurrency,
            "recommended_executor": asdict(self.recommended_executor),
            "gil_reenabled_by": list(self.gil_reenabled_by),
            "limited": self.limited,
            "missing": self.missing,
            "notes": list(self.notes),
            "usable_cores": self.usable_cores,
            "seconds": round(self.seconds, 3),
            "interpreter": self.interpreter,
            "parallel_capacity": (
                None
                if self.parallel_capacity is None
                else {
                    "processes": self.capacity_level,
                    "speedup": round(self.parallel_capacity, 3),
                }
            ),
            "executor_trials": [asdict(t) for t in self.executor_trials],
            "curves": [c.to_dict() for c in self.curves],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return :meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_html(self, path: str | Path) -> Path:
        """Write a self-contained HTML report (plots need the ``report`` extra) and return its path."""
        return write_html([self], Path(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Diagnosis:
        """Rebuild a diagnosis from :meth:`to_dict` output."""
        return cls(
            function=data["function"],
            stage=data.get("stage", ""),
            verdict=Verdict(data["verdict"]),
            explanation=data["explanation"],
            curves=tuple(Curve.from_dict(c) for c in data["curves"]),
            best_concurrency=data["best_concurrency"],
            recommended_executor=ExecutorAdvice(**data["recommended_executor"]),
            gil_reenabled_by=tuple(data.get("gil_reenabled_by", ())),
            limited=data.get("limited", False),
            missing=data.get("missing", ""),
            notes=tuple(data.get("notes", ())),
            usable_cores=data.get("usable_cores", 1),
            seconds=data.get("seconds", 0.0),
            interpreter=data.get("interpreter", ""),
            parallel_capacity=(data.get("parallel_capacity") or {}).get("speedup"),
            capacity_level=(data.get("parallel_capacity") or {}).get("processes", 0),
            executor_trials=tuple(ExecutorTrial(**t) for t in data.get("executor_trials", ())),
        )
