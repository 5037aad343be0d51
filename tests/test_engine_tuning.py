"""Applying a diagnosis report to a builder (``apply_tuning``, ``FTPIPE_TUNING``; _engine/_tuning.py)."""

from __future__ import annotations

import json
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import ftpipe
from ftpipe._runtime import gil_enabled, is_free_threaded
from ftpipe.diagnose import Diagnosis, ExecutorAdvice, Verdict
from ftpipe.diagnose._report import write_json

HERE = ".".join(map(str, sys.version_info[:2])) + ("t" if is_free_threaded() else "")
ADVICE_HOLDS_HERE = not is_free_threaded() or not gil_enabled()


def double(x: int) -> int:
    return 2 * x


def inc(x: int) -> int:
    return x + 1


def diagnosis(
    stage: str,
    executor: str,
    concurrency: int,
    *,
    verdict: Verdict = Verdict.GIL_BOUND,
    interpreter: str = HERE,
    free_threaded: str = "thread",
) -> Diagnosis:
    return Diagnosis(
        function=f"tests:{stage}",
        stage=stage,
        verdict=verdict,
        explanation="",
        curves=(),
        best_concurrency=concurrency,
        recommended_executor=ExecutorAdvice(executor, free_threaded),
        interpreter=interpreter,
    )


def builder() -> ftpipe.PipelineBuilder:
    return (
        ftpipe.PipelineBuilder()
        .add_source(range(20))
        .pipe(double, name="double")
        .pipe(inc, name="inc", concurrency=2)
        .add_sink()
    )


def stage(b: ftpipe.PipelineBuilder, name: str) -> ftpipe.StageConfig:
    return next(s for s in b.config().stages if s.name == name)


@pytest.mark.skipif(not ADVICE_HOLDS_HERE, reason="3.13t with the GIL forced on: covered below")
def test_the_advice_for_this_interpreter_sets_concurrency_and_executor() -> None:
    b = builder()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # everything applies: no warning at all
        b.apply_tuning([diagnosis("double", "process", 2)])
    tuned = stage(b, "double")
    assert (tuned.concurrency, tuned.executor) == (2, "process")
    assert stage(b, "inc").concurrency == 2  # not in the report: kept
    with b.build() as pipeline:
        assert list(pipeline) == [2 * x + 1 for x in range(20)]


def test_a_thread_advice_means_the_engines_threads() -> None:
    b = builder()
    if not ADVICE_HOLDS_HERE:
        pytest.skip("3.13t with the GIL forced on: covered below")
    b.apply_tuning([diagnosis("inc", "thread", 3)])
    assert (stage(b, "inc").concurrency, stage(b, "inc").executor) == (3, None)


def test_what_is_not_applied_is_a_warning_that_says_why() -> None:
    b = builder()
    with pytest.warns(ftpipe.TuningWarning) as record:
        b.apply_tuning(
            [
                diagnosis("double", "process", 2, verdict=Verdict.INCONCLUSIVE),
                diagnosis("gone", "thread", 4),
            ]
        )
    text = " | ".join(str(w.message) for w in record)
    assert "'double': the diagnosis is inconclusive" in text
    assert "['gone'] are not in this pipeline" in text
    assert stage(b, "double").concurrency == 1 and stage(b, "double").executor is None


def test_an_executor_the_function_cannot_run_on_is_refused_with_a_warning() -> None:
    b = ftpipe.PipelineBuilder().add_source(range(3)).pipe(lambda x: x, name="anon").add_sink()
    if not ADVICE_HOLDS_HERE:
        pytest.skip("3.13t with the GIL forced on: covered below")
    with pytest.warns(ftpipe.TuningWarning, match="'anon': the advice \\(process x2\\) cannot"):
        b.apply_tuning([diagnosis("anon", "process", 2)])
    assert stage(b, "anon").executor is None


def test_a_stage_on_the_users_own_executor_keeps_it() -> None:
    with ThreadPoolExecutor(2) as pool:
        b = ftpipe.PipelineBuilder().add_source(range(3)).pipe(inc, executor=pool, name="x")
        with pytest.warns(ftpipe.TuningWarning, match="runs on an executor you passed"):
            b.apply_tuning([diagnosis("x", "process", 2)])
        assert stage(b, "x").executor is pool


def test_advice_made_on_another_interpreter_is_never_applied_silently() -> None:
    b = builder()
    other = "3.11" if HERE != "3.11" else "3.13t"
    with pytest.warns(ftpipe.TuningWarning, match=f"made on {other}"):
        b.apply_tuning([diagnosis("double", "interpreter", 2, interpreter=other)])
    tuned = stage(b, "double")
    if is_free_threaded() and not gil_enabled():
        # Its free-threaded advice holds here, with the concurrency measured there.
        assert (tuned.executor, tuned.concurrency) == (None, 2)
    else:
        assert (tuned.executor, tuned.concurrency) == (None, 1)


def test_ftpipe_tuning_applies_a_report_file_at_build_without_changing_the_builder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_json([diagnosis("inc", "thread", 3)], tmp_path / "report.json")
    monkeypatch.setenv("FTPIPE_TUNING", str(path))
    b = builder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ftpipe.TuningWarning)
        pipeline = b.build()
    with pipeline:
        expected = 3 if ADVICE_HOLDS_HERE else 2
        assert next(s for s in pipeline.config.stages if s.name == "inc").concurrency == expected
        assert list(pipeline) == [2 * x + 1 for x in range(20)]
    assert stage(b, "inc").concurrency == 2


def test_bad_reports_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no diagnosis report at"):
        builder().apply_tuning(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a JSON diagnosis report"):
        builder().apply_tuning(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="has 'diagnoses'"):
        builder().apply_tuning({"something": 1})
    with pytest.raises(TypeError, match="apply_tuning\\(\\) takes"):
        builder().apply_tuning(42)


def test_a_report_document_and_a_single_diagnosis_dict_are_read() -> None:
    d: dict[str, Any] = diagnosis("inc", "thread", 3).to_dict()
    doc = {"schema": 1, "diagnoses": [d]}
    for report in (doc, d, json.loads(json.dumps(doc))):
        b = builder()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ftpipe.TuningWarning)
            b.apply_tuning(report)
        assert stage(b, "inc").concurrency == (3 if ADVICE_HOLDS_HERE else 2)
