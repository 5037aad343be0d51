"""Bad input across the builder, engine, executors, detector and CLI: one table.

Every row names one mistake a user makes, the exception type it must raise and
words the message must contain (the stage or argument, and the bad value), so the
user can fix it without reading ftpipe's source.  Rows for parts that are not
importable yet are skipped, not dropped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

import ftpipe


def double(x: int) -> int:
    return 2 * x


def src() -> ftpipe.PipelineBuilder:
    return ftpipe.PipelineBuilder().add_source(range(3))


class CliExit(Exception):
    """A CLI run that exited with a non-zero status (message: status and stderr)."""


def cli(*argv: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ftpipe", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise CliExit(f"exit {result.returncode}: {result.stderr.strip()}")


def executors() -> Any:
    return pytest.importorskip("ftpipe.executors", reason="ftpipe.executors is not written yet")


def detector() -> Any:
    module = pytest.importorskip("ftpipe.diagnose", reason="ftpipe.diagnose is not written yet")
    if not hasattr(module, "diagnose"):
        pytest.skip("ftpipe.diagnose.diagnose is not written yet")
    return module.diagnose


def run_twice() -> None:
    pipeline = src().pipe(double).build()
    list(pipeline)
    list(pipeline)


def register_thread() -> None:
    from ftpipe._engine import ExecutorKind, register_executor_kind

    register_executor_kind(
        ExecutorKind("thread", lambda n, s: ThreadPoolExecutor(n), lambda f, s: None)
    )


def disaggregate_ints() -> None:
    with src().disaggregate().build() as pipeline:
        list(pipeline)


def submit_after_shutdown() -> None:
    executor = executors().ThreadExecutor(1, name="late")
    executor.shutdown()
    executor.submit(double, 1)


def run_in_subprocess_user_executor() -> None:
    with ThreadPoolExecutor(1) as pool:
        executors().run_in_subprocess(src().pipe(double, executor=pool, name="pooled"))


def run_in_subprocess_generator_source() -> None:
    executors().run_in_subprocess(
        ftpipe.PipelineBuilder().add_source(x for x in range(3)).pipe(double)
    )


@dataclass(frozen=True)
class Row:
    id: str
    call: Callable[[], Any]
    exc: type[BaseException]
    words: tuple[str, ...]
    notes: bool = False  # the words may be in the exception's notes (run-time errors)


ROWS = [
    # -- builder: pipe() arguments ------------------------------------------------------------
    Row("fn-not-callable", lambda: src().pipe(42), TypeError, ("fn must be callable", "42")),
    Row(
        "concurrency-zero",
        lambda: src().pipe(double, concurrency=0),
        ValueError,
        ("'0:double'", "concurrency", "0"),
    ),
    Row(
        "concurrency-str",
        lambda: src().pipe(double, concurrency="4"),
        TypeError,
        ("concurrency", "'4'"),
    ),
    Row(
        "concurrency-float",
        lambda: src().pipe(double, concurrency=2.5),
        TypeError,
        ("concurrency", "2.5"),
    ),
    Row(
        "buffer-negative",
        lambda: src().pipe(double, buffer_size=-1, name="b"),
        ValueError,
        ("'b'", "buffer_size", "-1"),
    ),
    Row(
        "on-error-unknown",
        lambda: src().pipe(double, on_error="ignore"),
        ValueError,
        ("on_error", "'ignore'"),
    ),
    Row(
        "max-failures-negative",
        lambda: src().pipe(double, on_error="skip", max_failures=-1),
        ValueError,
        ("max_failures", "-1"),
    ),
    Row(
        "max-failures-without-skip",
        lambda: src().pipe(double, max_failures=2),
        ValueError,
        ("max_failures", "skip"),
    ),
    Row("retries-negative", lambda: src().pipe(double, retries=-1), ValueError, ("retries", "-1")),
    Row(
        "executor-unknown",
        lambda: src().pipe(double, executor="gpu"),
        ValueError,
        ("unknown executor", "'gpu'", "thread"),
    ),
    Row(
        "executor-wrong-type",
        lambda: src().pipe(double, executor=3),
        TypeError,
        ("executor", "int"),
    ),
    Row(
        "ordered-not-bool",
        lambda: src().pipe(double, ordered="yes"),
        TypeError,
        ("ordered", "'yes'"),
    ),
    Row("name-empty", lambda: src().pipe(double, name=""), TypeError, ("name",)),
    Row(
        "name-duplicate",
        lambda: src().pipe(double, name="x").pipe(double, name="x"),
        ValueError,
        ("'x'", "twice"),
    ),
    # -- builder: other methods ---------------------------------------------------------------
    Row("aggregate-zero", lambda: src().aggregate(0), ValueError, ("aggregate", "0")),
    Row("aggregate-float", lambda: src().aggregate(2.5), TypeError, ("aggregate", "2.5")),
    Row(
        "sink-buffer-zero",
        lambda: src().add_sink(buffer_size=0),
        ValueError,
        ("sink", "buffer_size", "0"),
    ),
    Row(
        "source-not-iterable",
        lambda: ftpipe.PipelineBuilder().add_source(42),
        TypeError,
        ("source", "int", "42"),
    ),
    Row(
        "source-str",
        lambda: ftpipe.PipelineBuilder().add_source("abc"),
        TypeError,
        ("source", "str"),
    ),
    Row("source-twice", lambda: src().add_source([1]), ValueError, ("source", "once")),
    Row(
        "build-without-source",
        lambda: ftpipe.PipelineBuilder().pipe(double).build(),
        ValueError,
        ("no source",),
    ),
    # -- engine: run time ---------------------------------------------------------------------
    Row("pipeline-run-twice", run_twice, RuntimeError, ("already ran", "build a new one")),
    Row("register-thread-kind", register_thread, ValueError, ("'thread'",)),
    Row(
        "disaggregate-non-iterables",
        disaggregate_ints,
        TypeError,
        ("'0:disaggregate'", "not iterable"),
        notes=True,
    ),
    # -- executors ------------------------------------------------------------------------------
    Row(
        "process-lambda",
        lambda: (executors(), src().pipe(lambda x: x, executor="process", name="lam")),
        TypeError,
        ("'lam'", "lambda"),
    ),
    Row(
        "interpreter-lambda",
        lambda: (executors(), src().pipe(lambda x: x, executor="interpreter", name="lam")),
        (TypeError, ValueError),  # ValueError where subinterpreters are unavailable
        ("'lam'",),
    ),
    Row(
        "process-start-method-fork",
        lambda: executors().ProcessExecutor(start_method="fork"),
        ValueError,
        ("start_method", "'fork'"),
    ),
    Row(
        "process-max-workers-zero",
        lambda: executors().ProcessExecutor(max_workers=0),
        ValueError,
        ("max_workers", "0"),
    ),
    Row(
        "process-max-workers-float",
        lambda: executors().ProcessExecutor(max_workers=1.5),
        TypeError,
        ("max_workers", "1.5"),
    ),
    Row(
        "thread-initializer-not-callable",
        lambda: executors().ThreadExecutor(initializer=3),
        TypeError,
        ("initializer", "3"),
    ),
    Row("submit-after-shutdown", submit_after_shutdown, RuntimeError, ("'late'", "shutdown")),
    Row(
        "subprocess-user-executor",
        run_in_subprocess_user_executor,
        TypeError,
        ("'pooled'", "ThreadPoolExecutor"),
    ),
    Row(
        "subprocess-generator-source",
        run_in_subprocess_generator_source,
        TypeError,
        ("source", "generator"),
    ),
    Row(
        "subprocess-buffer-zero",
        lambda: executors().run_in_subprocess(src().pipe(double), buffer_size=0),
        ValueError,
        ("buffer_size", "0"),
    ),
    Row(
        "subprocess-buffer-str",
        lambda: executors().run_in_subprocess(src().pipe(double), buffer_size="4"),
        TypeError,
        ("buffer_size", "'4'"),
    ),
    # -- detector -------------------------------------------------------------------------------
    Row("diagnose-not-callable", lambda: detector()(42, [1]), TypeError, ("callable", "42")),
    Row("diagnose-no-inputs", lambda: detector()(json.dumps, []), ValueError, ("input",)),
    Row(
        "diagnose-concurrency-zero",
        lambda: detector()(json.dumps, [1], concurrency=[0]),
        ValueError,
        ("concurrency", "0"),
    ),
    Row(
        "diagnose-configurations-unknown",
        lambda: detector()(json.dumps, [1], configurations="bogus"),
        ValueError,
        ("configurations", "'bogus'"),
    ),
    # -- CLI ------------------------------------------------------------------------------------
    Row("cli-unknown-command", lambda: cli("bogus"), CliExit, ("exit 2", "'bogus'")),
    Row(
        "cli-doctor-unknown-option",
        lambda: cli("doctor", "--bogus"),
        CliExit,
        ("exit 2", "--bogus"),
    ),
    Row(
        "cli-diagnose-missing-inputs",
        lambda: cli("diagnose", "json:dumps"),
        CliExit,
        ("exit 2", "--inputs"),
    ),
    Row(
        "cli-diagnose-bad-module",
        lambda: cli("diagnose", "nosuchmodule_ftpipe:f", "--inputs", "json:x"),
        CliExit,
        ("exit 2", "nosuchmodule_ftpipe"),
    ),
    Row(
        "cli-diagnose-bad-function",
        lambda: cli("diagnose", "json:nosuchfunc", "--inputs", "json:x"),
        CliExit,
        ("exit 2", "nosuchfunc"),
    ),
    Row(
        "cli-diagnose-missing-pickle",
        lambda: cli("diagnose", "json:dumps", "--inputs", "no_such_inputs.pkl"),
        CliExit,
        ("exit 2", "no_such_inputs.pkl"),
    ),
]


def test_table_has_at_least_20_kinds() -> None:
    assert len(ROWS) >= 20
    assert len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row) -> None:
    with pytest.raises(row.exc) as info:
        row.call()
    message = str(info.value)
    if row.notes:
        message += "\n" + "\n".join(getattr(info.value, "__notes__", []))
    missing = [w for w in row.words if w not in message]
    assert not missing, f"{row.id}: message lacks {missing}: {message!r}"
