"""The detector's results: verdicts, measured points, per-configuration curves, the diagnosis.

Everything here is frozen and JSON-ready; the field names of ``to_dict()`` are the
documented, stable JSON schema (see ``docs/diagnose.md``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

__all__ = [
    "Curve",
    "Diagnosis",
    "ExecutorAdvice",
    "Point",
    "Verdict",
    "SCHEMA_VERSION",
    "executor_with_gil",
]

SCHEMA_VERSION = 1


class Verdict(str, Enum):
    """Why a function does (not) scale with threads; the value is the kebab-case label."""

    SCALES = "scales"
    GIL_BOUND = "gil-bound"
    BLOCKING_CONTENTION = "blocking-contention"
    COMPUTE_CONTENTION = "compute-contention"
    INTERNALLY_PARALLEL = "internally-parallel"
    FT_REGRESSION = "ft-regression"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Point:
    """Medians of the measurement rounds at one concurrency.

    Attributes:
        concurrency: Threads calling the function at once.
        items_per_s: Throughput.
        cpu_s_per_item: Process CPU seconds (all threads) per item.
        wall_s_per_item: Seconds one call took as seen by its thread (latency).
        cores_busy: Process CPU seconds per wall second.
        neighbour_cores: Cores used by *other* processes meanwhile (0 where unknown).
        starved_cores: Time the workers were runnable but waited for a CPU, in cores
            (run-queue wait per wall second, summed over threads; None where unknown).
        spread: (max - min) / median of the rounds' throughput.
        rounds: Rounds the medians are taken over.
        items: Calls made in those rounds.
        peak_rss_mib: The process's peak resident memory so far.
        samples: Each round's items/s, for transparency.
    """

    concurrency: int
    items_per_s: float
    cpu_s_per_item: float
    wall_s_per_item: float
    cores_busy: float
    neighbour_cores: float
    spread: float
    rounds: int
    items: int
    peak_rss_mib: float
    samples: tuple[float, ...] = ()
    starved_cores: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Point:
        return cls(**{**data, "samples": tuple(data.get("samples", ()))})


@dataclass(frozen=True)
class Curve:
    """One interpreter configuration's measurements (or why there are none).

    Attributes:
        label: ``"3.13t"`` (GIL off by default), ``"3.13t gil=1"``, ``"3.13t gil=0 forced"``,
            ``"3.13 GIL build"``, ``"in-process 3.13t GIL off"``.
        role: ``"no-gil"``, ``"gil"`` (same free-threaded binary, GIL forced on) or
            ``"gil-build"`` (a stock build); ``"in-process"`` for a sweep in this process.
        executable: The interpreter binary.
        version: ``"3.13.5"``.
        free_threaded: The binary was built with ``--disable-gil``.
        gil_enabled: The GIL was on at the end of the probe.
        gil_reenabled_by: Modules whose import turned the GIL back on.
        status: ``"ok"``, ``"import-error"``, ``"input-error"``, ``"error"``, ``"timeout"``,
            ``"crashed"``.
        message: Why there are no points (empty when ``ok``).
        points: One per concurrency, rising.
        seconds: Time the probe took, start-up included.
        uses_numpy: numpy or torch was imported by the function's module.
    """

    label: str
    role: str
    executable: str
    version: str
    free_threaded: bool
    gil_enabled: bool
    gil_reenabled_by: tuple[str, ...] = ()
    status: str = "ok"
    message: str = ""
    points: tuple[Point, ...] = ()
    seconds: float = 0.0
    uses_numpy: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok" and len(self.points) >= 2

    def point(self, concurrency: int) -> Point | None:
        return next((p for p in self.points if p.concurrency == concurrency), None)

    def speedup_at(self, concurrency: int) -> float | None:
        """Throughput at ``concurrency`` over throughput at 1; None where either is missing."""
        one, at = self.point(1), self.point(concurrency)
        if one is None or at is None or one.items_per_s <= 0:
            return None
        return at.items_per_s / one.items_per_s

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gil_reenabled_by"] = list(self.gil_reenabled_by)
        data["points"] = [asdict(p) | {"samples": list(p.samples)} for p in self.points]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Curve:
        return cls(
            **{
                **data,
                "gil_reenabled_by": tuple(data.get("gil_reenabled_by", ())),
                "points": tuple(Point.from_dict(p) for p in data.get("points", ())),
            }
        )


@dataclass(frozen=True)
class ExecutorAdvice:
    """Which executor to give the stage.

    Attributes:
        this_interpreter: ``"thread"``, ``"interpreter"`` or ``"process"`` for the
            interpreter the diagnosis ran in.
        free_threaded: The same for a free-threaded build (3.13t) with the GIL off.
    """

    this_interpreter: str
    free_threaded: str


def executor_with_gil(verdict: Verdict, *, uses_numpy: bool, subinterpreters: bool) -> str:
    """The executor to advise where the GIL is on: ``"thread"``, ``"interpreter"`` or ``"process"``.

    Only GIL-bound work needs to leave the threads: for subinterpreters, or for
    processes where there are none or numpy is involved (numpy refuses subinterpreters).
    """
    if verdict is not Verdict.GIL_BOUND:
        return "thread"
    return "process" if uses_numpy or not subinterpreters else "interpreter"


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
    stage: str = field(default="")
    parallel_capacity: float | None = None
    capacity_level: int = 0

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
            "curves": [c.to_dict() for c in self.curves],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return :meth:`to_dict` as a JSON string."""
        import json

        return json.dumps(self.to_dict(), indent=indent)

    def to_html(self, path: str | Path) -> Path:
        """Write a self-contained HTML report (plots need the ``report`` extra) and return its path."""
        from ._report import write_html

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
        )
