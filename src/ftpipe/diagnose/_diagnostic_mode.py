"""Diagnostic mode: ``FTPIPE_DIAGNOSTIC_MODE=1 python train.py`` profiles every stage, no code change.

``PipelineBuilder.build()`` returns a :class:`DiagnosticProfiler` instead of a
pipeline (through the engine's diagnostic hook).  On first iteration it:

    source --(first N items)--> stage 1 --(its real outputs)--> stage 2 --> ...
                                   |                              |
                               diagnose()                     diagnose()
                                          \\                     /
                              report.json + report.html in FTPIPE_DIAGNOSTIC_DIR

then prints a summary table and the report's path, and exits with status 1 so
no scheduler mistakes the run for a finished job.

Environment:
    FTPIPE_DIAGNOSTIC_ITEMS   source items to cache (default 200)
    FTPIPE_DIAGNOSTIC_DIR     where the report goes (default ./ftpipe-diagnostic-<timestamp>)
    FTPIPE_DIAGNOSTIC_QUICK   1 for quick measurements (about 20 s per stage instead of up to 75 s)
    FTPIPE_DIAGNOSTIC_CONCURRENCY  levels to try, e.g. 1,2,4 (default 1, 2, 4, ... past the cores)
    FTPIPE_DIAGNOSTIC_PASS_SECONDS seconds each stage may run over its cached inputs to make
                                   the next stage's (default 20, 5 with QUICK); a slow stage
                                   runs on fewer items, and the report says so
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import os
import sys
import time
from collections.abc import AsyncIterable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from .._engine import PipelineConfig, PipelineStats, StageConfig, StageKind
from .._engine._calls import caller
from .._engine._context import ChunkContext, enter_chunk, leave_chunk, positioned
from ._diagnosis import Diagnosis

__all__ = ["DiagnosticProfiler"]

DEFAULT_ITEMS = 200
# Seconds a stage may spend running over its cached inputs to make the next stage's
# inputs (plus the one call in progress).  Slow stages thus run on fewer items: 200
# items at 2 s each would otherwise take 400 s per stage before measuring anything.
DEFAULT_PASS_SECONDS = 20.0
QUICK_PASS_SECONDS = 5.0


def _take(source: Any, n: int) -> list[Any]:
    if isinstance(source, AsyncIterable):

        async def collect() -> list[Any]:
            out: list[Any] = []
            async for item in source:
                out.append(item)
                if len(out) >= n:
                    break
            return out

        return asyncio.run(collect())
    return list(itertools.islice(iter(source), n))


@dataclass(frozen=True)
class _Pass:
    """One stage run serially over its cached inputs (to make the next stage's inputs).

    Attributes:
        outputs: What the next stage is fed.
        good: The inputs whose calls succeeded: what the stage is diagnosed on (the
            sweep stops at the first call that raises).
        done: Inputs run before the pass stopped (all of them, unless out of time).
        skipped: Inputs dropped by ``on_error="skip"``.
        error: The first failure of a stage with ``on_error="raise"`` ("" if none).
        seconds: How long the pass took.
    """

    outputs: list[Any]
    good: list[Any]
    done: int
    skipped: int = 0
    error: str = ""
    seconds: float = 0.0


def _run_stage(stage: StageConfig, items: list[Any], budget_s: float = math.inf) -> _Pass:
    """Apply one stage to ``items`` in this thread, stopping once ``budget_s`` is spent.

    At least one input is run (a call cannot be cut short), so a pass lasts at most
    the budget plus one call.
    """
    if stage.kind is StageKind.AGGREGATE:
        groups = [items[i : i + stage.size] for i in range(0, len(items), stage.size)]
        if stage.drop_last and groups and len(groups[-1]) < stage.size:
            groups.pop()
        return _Pass(groups, items, len(items))
    if stage.kind is StageKind.DISAGGREGATE:
        return _Pass([x for group in items for x in group], items, len(items))
    assert stage.fn is not None
    call, close = caller(stage.fn, stage.fn_kind)  # every kind: the call's outputs, a list
    outputs: list[Any] = []
    good: list[Any] = []
    skipped = 0
    started = time.perf_counter()
    deadline = started + budget_s
    done = 0
    # As in the pipeline: worker_info() names the stage, item_seed() gives its seeds.
    previous = enter_chunk(ChunkContext(stage.name, stage.concurrency, stage.seed_key, 0))
    try:
        for item in positioned(items, 0, stage.seed_key):
            if done and time.perf_counter() >= deadline:
                break
            done += 1
            try:
                outputs.extend(call(item))
            except Exception as exc:
                if stage.on_error == "skip":
                    skipped += 1
                    continue
                return _Pass(
                    outputs,
                    good,
                    done,
                    skipped,
                    f"{type(exc).__name__}: {exc}",
                    time.perf_counter() - started,
                )
            good.append(item)
    finally:
        leave_chunk(previous)
        close()
    return _Pass(outputs, good, done, skipped, "", time.perf_counter() - started)


def _say_for(say: Callable[[str], None], stage: str, line: str) -> None:
    say(f"{stage}: {line}")


def _pass_notes(stage: StageConfig, run: _Pass, cached: int, budget_s: float) -> list[str]:
    """What the report says about a pass that did not run every input, or dropped some."""
    notes = []
    if run.done < cached and not run.error:  # out of time (an error is noted on its own)
        per_call = run.seconds / max(1, run.done)
        notes.append(
            f"{stage.name}: calls take about {per_call:.2g} s, so it ran on {run.done} of its "
            f"{cached} cached inputs within its {budget_s:g} s "
            "(FTPIPE_DIAGNOSTIC_PASS_SECONDS); it was diagnosed on those, and the next stage "
            f"on the {len(run.outputs)} outputs they made"
        )
    if run.skipped:
        notes.append(
            f"{stage.name}: {run.skipped} of {run.done} inputs raised and were skipped "
            "(on_error='skip'); it was diagnosed on the others"
        )
    return notes


class DiagnosticProfiler:
    """What ``build()`` returns under ``FTPIPE_DIAGNOSTIC_MODE=1``: iterate it to profile and exit.

    It accepts the same use as a pipeline (``with``, ``for``, ``next()``, ``start()``,
    ``stats()``, ``close()``), so the training script runs unchanged up to its first
    item.
    """

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.items = int(os.environ.get("FTPIPE_DIAGNOSTIC_ITEMS", "") or DEFAULT_ITEMS)
        default_dir = Path.cwd() / time.strftime("ftpipe-diagnostic-%Y%m%d-%H%M%S")
        self.directory = Path(os.environ.get("FTPIPE_DIAGNOSTIC_DIR", "") or default_dir)
        self.quick = os.environ.get("FTPIPE_DIAGNOSTIC_QUICK", "") not in ("", "0")
        levels = os.environ.get("FTPIPE_DIAGNOSTIC_CONCURRENCY", "")
        self.levels = [int(x) for x in levels.split(",") if x.strip()] or None
        default_pass = QUICK_PASS_SECONDS if self.quick else DEFAULT_PASS_SECONDS
        self.pass_seconds = float(
            os.environ.get("FTPIPE_DIAGNOSTIC_PASS_SECONDS", "") or default_pass
        )

    def __enter__(self) -> DiagnosticProfiler:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __iter__(self) -> Iterator[Any]:
        self.run_and_exit()

    def __next__(self) -> Any:
        self.run_and_exit()

    def start(self) -> None:
        """Nothing to start: profiling begins with the first item asked for."""

    def close(self) -> None:
        """Nothing to stop (a script's ``finally: pipeline.close()`` must not fail)."""

    def stats(self) -> PipelineStats:
        """Empty statistics: no pipeline runs in diagnostic mode."""
        return PipelineStats((), 0.0, None)

    def profile(self) -> tuple[list[Diagnosis], list[str]]:
        """Diagnose every stage on its real inputs; return the diagnoses and stage notes."""
        from ._api import diagnose

        def say(line: str) -> None:
            print(f"[ftpipe diagnostic] {line}", file=sys.stderr, flush=True)

        items = _take(self.config.source, self.items)
        say(f"cached {len(items)} source items; profiling {len(self.config.stages)} stages")
        results: list[Diagnosis] = []
        notes: list[str] = []
        for stage in self.config.stages:
            if not items:
                notes.append(f"{stage.name}: not profiled, it received no items")
                continue
            if stage.kind is StageKind.PIPE:
                say(f"stage {stage.name}: running it on {len(items)} items")
            run = _run_stage(stage, items, self.pass_seconds)
            notes += _pass_notes(stage, run, len(items), self.pass_seconds)
            if stage.kind is StageKind.PIPE:
                assert stage.fn is not None
                if run.good:
                    say(f"stage {stage.name}: diagnosing on {len(run.good)} items")
                    progress = functools.partial(_say_for, say, stage.name)
                    results.append(
                        diagnose(
                            stage.fn,
                            run.good,
                            quick=self.quick,
                            stage=stage.name,
                            concurrency=self.levels,
                            progress=progress,
                        )
                    )
                else:
                    notes.append(f"{stage.name}: not diagnosed, no call succeeded")
            if run.error:
                notes.append(
                    f"{stage.name}: raised {run.error} on cached input #{run.done - 1}; "
                    + (f"diagnosed on the {len(run.good)} inputs before it; " if run.good else "")
                    + "later stages not profiled"
                )
                break
            items = run.outputs
        return results, notes

    def run_and_exit(self) -> NoReturn:
        """Profile, write the report, print the summary and exit with status 1."""
        from ._report import summary_table, write_html, write_json

        results, notes = self.profile()
        self.directory.mkdir(parents=True, exist_ok=True)
        write_json(results, self.directory / "report.json", notes=notes)
        html = write_html(results, self.directory / "report.html", notes=notes)
        print(summary_table(results))
        for note in notes:
            print("note: " + note)
        print(f"ftpipe diagnostic report: {html}")
        print("(diagnostic mode: exiting with status 1; unset FTPIPE_DIAGNOSTIC_MODE to train)")
        sys.stdout.flush()
        sys.exit(1)
