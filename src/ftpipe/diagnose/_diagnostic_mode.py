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
    FTPIPE_DIAGNOSTIC_QUICK   1 for quick measurements (about 15 s per stage instead of 60 s)
    FTPIPE_DIAGNOSTIC_CONCURRENCY  levels to try, e.g. 1,2,4 (default 1, 2, 4, ... past the cores)
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import sys
import time
from collections.abc import AsyncIterable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from .._engine import PipelineConfig, StageConfig, StageKind
from ._model import Diagnosis

__all__ = ["DiagnosticProfiler"]

DEFAULT_ITEMS = 200


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


def _run_stage(stage: StageConfig, items: list[Any]) -> tuple[list[Any], str]:
    """Apply one stage to ``items`` in this thread; return its outputs and an error ("" if none)."""
    if stage.kind is StageKind.AGGREGATE:
        groups = [items[i : i + stage.size] for i in range(0, len(items), stage.size)]
        if stage.drop_last and groups and len(groups[-1]) < stage.size:
            groups.pop()
        return groups, ""
    if stage.kind is StageKind.DISAGGREGATE:
        return [x for group in items for x in group], ""
    from ._sweep import make_caller

    assert stage.fn is not None
    call, close = make_caller(stage.fn)()
    outputs: list[Any] = []
    generator = stage.fn_kind.value in ("generator", "async-generator")
    try:
        for item in items:
            try:
                if generator:
                    outputs.extend(_collect(stage, item))
                else:
                    outputs.append(call(item))
            except Exception as exc:
                if stage.on_error == "skip":
                    continue
                return outputs, f"{type(exc).__name__}: {exc}"
    finally:
        close()
    return outputs, ""


def _collect(stage: StageConfig, item: Any) -> list[Any]:
    assert stage.fn is not None
    if stage.fn_kind.value == "async-generator":

        async def drain() -> list[Any]:
            return [x async for x in stage.fn(item)]  # type: ignore[misc]

        return asyncio.run(drain())
    return list(stage.fn(item))


def _say_for(say: Callable[[str], None], stage: str, line: str) -> None:
    say(f"{stage}: {line}")


class DiagnosticProfiler:
    """What ``build()`` returns under ``FTPIPE_DIAGNOSTIC_MODE=1``: iterate it to profile and exit.

    It accepts the same ``with`` / ``for`` use as a pipeline, so the training script
    runs unchanged up to its first iteration.
    """

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.items = int(os.environ.get("FTPIPE_DIAGNOSTIC_ITEMS", "") or DEFAULT_ITEMS)
        default_dir = Path.cwd() / time.strftime("ftpipe-diagnostic-%Y%m%d-%H%M%S")
        self.directory = Path(os.environ.get("FTPIPE_DIAGNOSTIC_DIR", "") or default_dir)
        self.quick = os.environ.get("FTPIPE_DIAGNOSTIC_QUICK", "") not in ("", "0")
        levels = os.environ.get("FTPIPE_DIAGNOSTIC_CONCURRENCY", "")
        self.levels = [int(x) for x in levels.split(",") if x.strip()] or None

    def __enter__(self) -> DiagnosticProfiler:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __iter__(self) -> Iterator[Any]:
        self.run_and_exit()

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
            outputs, error = _run_stage(stage, items)
            if stage.kind is StageKind.PIPE:
                assert stage.fn is not None
                say(f"stage {stage.name}: diagnosing on {len(items)} items")
                progress = functools.partial(_say_for, say, stage.name)
                results.append(
                    diagnose(
                        stage.fn,
                        items,
                        quick=self.quick,
                        stage=stage.name,
                        concurrency=self.levels,
                        progress=progress,
                    )
                )
            if error:
                notes.append(
                    f"{stage.name}: raised {error} on a cached item; later stages not profiled"
                )
                break
            items = outputs
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
