"""The demo's records: one workload's outcome (:class:`Row`) and the whole run (:class:`DemoResult`).

The runner makes them; the text table, the JSON document and the HTML page are
made from them and from nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..diagnose import Configuration, Diagnosis
from ._workloads import Workload

__all__ = ["DemoResult", "Row"]


@dataclass(frozen=True)
class Row:
    """One workload's outcome: its diagnosis, or why it could not run, per configuration."""

    workload: Workload
    diagnosis: Diagnosis | None
    skipped: dict[str, str]  # configuration label -> why it was not measured
    error: str = ""


@dataclass(frozen=True)
class DemoResult:
    """Everything the demo measured; what the table, the HTML and the JSON are made from."""

    configurations: tuple[Configuration, ...]
    rows: tuple[Row, ...]
    pipelines: dict[str, dict[str, Any]]  # configuration label -> pipeline_timings() or error
    cores: int
    seconds: float
    quick: bool
    notes: tuple[str, ...] = field(default=())
