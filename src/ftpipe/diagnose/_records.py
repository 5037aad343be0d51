"""The detector's records: a configuration, the points measured under it, its curve.

One record, one spelling: the probe builds a :class:`Curve` and sends ``to_dict()``
across the process boundary; the parent reads it back with ``from_dict()``.
Everything here is frozen and JSON-ready; the field names of ``to_dict()`` are the
documented, stable JSON schema (see ``docs/diagnose.md``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any

__all__ = [
    "SCHEMA_VERSION",
    "Configuration",
    "Curve",
    "ExecutorAdvice",
    "ExecutorTrial",
    "Point",
    "Verdict",
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
class Configuration:
    """One way to start an interpreter for a probe.

    Attributes:
        label: Shown in reports: ``"3.13t"`` (default: GIL off), ``"3.13t gil=1"``,
            ``"3.13t gil=0 forced"``, ``"3.13 GIL build"``.
        role: ``"no-gil"``, ``"gil"`` (free-threaded binary, GIL forced on) or ``"gil-build"``;
            ``"in-process"`` for a sweep in the calling process.
        executable: The binary (a venv's ``python`` keeps the venv's packages).
        version: ``"3.13.5"``.
        free_threaded: Built with ``--disable-gil``.
        gil: The ``-X gil=`` value, or None (the build's default).
    """

    label: str
    role: str
    executable: str
    version: str
    free_threaded: bool
    gil: int | None

    @property
    def argv(self) -> list[str]:
        """The command line that starts a probe under this configuration."""
        flags = ["-X", f"gil={self.gil}"] if self.gil is not None else []
        return [self.executable, *flags, "-m", "ftpipe.diagnose._probe"]

    @property
    def expects_gil(self) -> bool:
        """Whether the GIL is on as the interpreter starts: a GIL build, or ``-X gil=1``."""
        return not self.free_threaded or self.gil == 1


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
        gil: The ``-X gil=`` value the probe started with (None: the build's default).
        repeat_of: The label of the curve this one measures again in a second process
            (empty for a first measurement); see ``_repeat``.
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
    gil: int | None = None
    repeat_of: str = ""

    @classmethod
    def of(cls, config: Configuration, **measured: Any) -> Curve:
        """The curve of ``config``; ``measured`` fills in (or corrects) the rest.

        Until a probe says otherwise the GIL is taken to be as the configuration
        starts it (a failed probe of the default no-GIL configuration reads GIL off).
        """
        base: dict[str, Any] = {
            "version": config.version,
            "free_threaded": config.free_threaded,
            "gil_enabled": config.expects_gil,
        }
        return cls(
            config.label, config.role, config.executable, **{**base, **measured}, gil=config.gil
        )

    @property
    def configuration(self) -> Configuration:
        """The configuration this curve was measured under."""
        return Configuration(
            self.label, self.role, self.executable, self.version, self.free_threaded, self.gil
        )

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
        known = {f.name for f in fields(cls)}
        return cls(
            **{
                **{k: v for k, v in data.items() if k in known},
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


@dataclass(frozen=True)
class ExecutorTrial:
    """The function run through a pipeline on one executor, in the diagnosing process.

    Attributes:
        executor: ``"thread"``, ``"process"`` or ``"interpreter"``.
        concurrency: The stage's workers.
        items_per_s: Outputs delivered per second after a warm-up (None: not measured).
        status: ``"ok"``, ``"unavailable"`` (the function cannot run there) or ``"error"``.
        message: Why it was not measured (empty when ``ok``).
    """

    executor: str
    concurrency: int
    items_per_s: float | None
    status: str = "ok"
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.items_per_s is not None
