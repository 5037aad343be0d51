"""ftpipe.diagnose on functions of known cause, in real probe subprocesses.

The machine these run on has 2 cores shared with other jobs, so a diagnosis that
comes back inconclusive *because other processes filled the cores* (the detector
measures that and says so) is skipped with its explanation:
never accepted as a pass, never turned into a wrong verdict.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import diagnose_workloads as w
import ftpipe
from ftpipe import Diagnosis, Verdict
from ftpipe._runtime import is_free_threaded
from ftpipe.diagnose._capacity import MIN_CAPACITY

# A diagnosis measures the machine: four at once (tests-parallel) measure each other, and
# each takes four times as long.
pytestmark = pytest.mark.thread_unsafe

needs_free_threaded = pytest.mark.skipif(
    not is_free_threaded(), reason="needs a free-threaded build"
)


# The detector's own reasons for declining to answer because the machine was noisy.
# Each is its measurement, not a guess: the calibration beside the curves (processes
# spinning together), the workers' run-queue time (CPU they wanted while other processes
# had it), rounds whose spread straddles a threshold, and a second probe process that
# read another verdict (both figures are in the explanation).
NOISE_REASONS = (
    "other processes kept the cores busy",
    "scattered too much to choose between",
    "two probe processes disagreed",
)


def _declined_for_noise(d: Diagnosis) -> str:
    """Why the detector measured the machine too noisy to answer, or "" if it did not."""
    if d.parallel_capacity is not None and d.parallel_capacity < MIN_CAPACITY:
        return (
            f"{d.capacity_level} processes ran only {d.parallel_capacity:.2f}x as fast as one "
            f"during the diagnosis, so scaling cannot be checked"
        )
    if d.verdict is Verdict.INCONCLUSIVE:
        return next((r for r in NOISE_REASONS if r in d.explanation), "")
    return ""


def diagnose_robustly(fn: Callable[..., Any], inputs: list[Any], **kwargs: Any) -> Diagnosis:
    """Diagnose; where the detector declines because of noise it measured, do what its
    explanation asks (run again) once, and skip (never pass) if it declines again.

    A wrong verdict is never retried or skipped: it fails in ``check_verdict``.
    """
    d = ftpipe.diagnose(fn, inputs, **kwargs)
    if not _declined_for_noise(d):
        return d
    first = d.explanation
    d = ftpipe.diagnose(fn, inputs, **kwargs)
    reason = _declined_for_noise(d)
    if reason:
        pytest.skip(
            f"the detector measured a noisy machine twice ({reason}): {first} | {d.explanation}"
        )
    return d


def check_verdict(d: Diagnosis, expected: set[Verdict]) -> None:
    """Assert the verdict of a diagnosis from ``diagnose_robustly``."""
    if d.verdict in expected:
        return
    raise AssertionError(
        f"verdict {d.verdict.value}, expected {sorted(v.value for v in expected)} "
        f"(2 processes ran {d.parallel_capacity}x as fast as 1 meanwhile): {d.explanation}"
    )


# (function, inputs, expected verdicts): one verdict each, except the shared dict, whose
# slowdown without the GIL is either called a regression (clearly worse than with the GIL)
# or compute contention (CPU per item grows) depending on how bad it is on the day.
BATTERY = [
    (w.pure_python, w.pure_python_inputs, {Verdict.GIL_BOUND}),
    (w.json_roundtrip, w.json_inputs, {Verdict.GIL_BOUND}),
    (w.hash_buffer, w.hash_inputs, {Verdict.SCALES}),
    (w.locked_loop, w.locked_inputs, {Verdict.BLOCKING_CONTENTION}),
    (w.shared_dict, w.shared_dict_inputs, {Verdict.FT_REGRESSION, Verdict.COMPUTE_CONTENTION}),
    (w.numpy_matmul, w.numpy_inputs, {Verdict.INTERNALLY_PARALLEL}),
    (w.sleepy, w.sleepy_inputs, {Verdict.SCALES}),
]


@needs_free_threaded
@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("fn", "make_inputs", "expected"), BATTERY, ids=[b[0].__name__ for b in BATTERY]
)
def test_known_causes_quick(
    fn: Callable[..., Any], make_inputs: Callable[[], list[Any]], expected: set[Verdict]
) -> None:
    d = diagnose_robustly(fn, make_inputs(), quick=True)
    check_verdict(d, expected)
    assert d.seconds <= 25  # the --quick budget (about 20 s), with room for a busy machine
    assert {c.role for c in d.curves} >= {"no-gil", "gil"}


@needs_free_threaded
@pytest.mark.slow
@pytest.mark.timeout(210)
def test_default_diagnosis_within_its_budget_with_numbers_and_advice() -> None:
    d = diagnose_robustly(w.pure_python, w.pure_python_inputs())
    check_verdict(d, {Verdict.GIL_BOUND})
    assert d.seconds <= 90  # about 75 s, with room for a busy machine
    assert "3.13t:" in d.explanation and "gil=1" in d.explanation and "x as fast" in d.explanation
    assert d.best_concurrency == 2
    assert (d.recommended_executor.this_interpreter, d.recommended_executor.free_threaded) == (
        "thread",
        "thread",
    )
    no_gil = next(c for c in d.curves if c.role == "no-gil")
    assert [p.concurrency for p in no_gil.points] == [1, 2, 4]
    assert all(p.rounds >= 2 and p.items > 0 and p.peak_rss_mib > 0 for p in no_gil.points)
    assert not no_gil.gil_enabled and no_gil.gil_reenabled_by == ()
    doc = json.loads(d.to_json())
    assert doc["verdict"] == "gil-bound" and doc["function"] == "diagnose_workloads:pure_python"
    assert Diagnosis.from_dict(doc).verdict is Verdict.GIL_BOUND


JSON_FIELDS = {
    "schema",
    "function",
    "stage",
    "verdict",
    "explanation",
    "best_concurrency",
    "recommended_executor",
    "gil_reenabled_by",
    "limited",
    "missing",
    "notes",
    "usable_cores",
    "seconds",
    "interpreter",
    "parallel_capacity",
    "executor_trials",
    "curves",
}
CURVE_FIELDS = {
    "label",
    "role",
    "executable",
    "version",
    "free_threaded",
    "gil_enabled",
    "gil_reenabled_by",
    "status",
    "message",
    "points",
    "seconds",
    "uses_numpy",
    "gil",
    "repeat_of",
}
POINT_FIELDS = {
    "concurrency",
    "items_per_s",
    "cpu_s_per_item",
    "wall_s_per_item",
    "cores_busy",
    "neighbour_cores",
    "starved_cores",
    "spread",
    "rounds",
    "items",
    "peak_rss_mib",
    "samples",
}


@pytest.mark.timeout(60)
def test_lambda_is_measured_in_process_and_the_json_fields_are_stable() -> None:
    d = ftpipe.diagnose(lambda s: s.upper(), ["abc"] * 4, concurrency=[2], quick=True)
    assert [c.role for c in d.curves] == ["in-process"]
    assert d.limited and "lambda" in d.missing and any("lambda" in n for n in d.notes)
    doc = json.loads(d.to_json())
    assert set(doc) == JSON_FIELDS
    assert set(doc["curves"][0]) == CURVE_FIELDS
    assert set(doc["curves"][0]["points"][0]) == POINT_FIELDS
    assert [p["concurrency"] for p in doc["curves"][0]["points"]] == [1, 2]  # 1 is always measured
    assert doc["verdict"] in {v.value for v in Verdict}


@pytest.mark.timeout(90)
def test_unimportable_everywhere_else_falls_back_to_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "only_here.py").write_text(
        textwrap.dedent("""
        import os
        if os.environ.get("FTPIPE_DIAGNOSE_PROBE"):
            raise ImportError("this module refuses to load in a probe")
        def work(x):
            return x * 2
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_here  # type: ignore[import-not-found]

    d = ftpipe.diagnose(only_here.work, [1, 2, 3], concurrency=[2], quick=True)
    probes = [c for c in d.curves if c.role != "in-process"]
    assert probes and all(c.status == "import-error" for c in probes)
    assert all("refuses to load in a probe" in c.message for c in probes)
    assert d.curves[-1].role == "in-process" and d.curves[-1].ok
    assert any("could load" in n for n in d.notes)


@pytest.mark.timeout(90)
def test_a_raising_function_is_reported_not_raised() -> None:
    d = ftpipe.diagnose(w.failing, [1, 2], concurrency=[2], quick=True)
    assert d.verdict is Verdict.INCONCLUSIVE
    assert all(c.status == "error" and "ValueError: bad item" in c.message for c in d.curves)


@pytest.mark.timeout(90)
def test_without_a_free_threaded_interpreter_the_verdict_is_limited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ftpipe.diagnose import _plan as configs

    monkeypatch.setattr(configs, "find_interpreters", lambda: ())
    monkeypatch.setattr(configs, "is_free_threaded", lambda: False)
    d = ftpipe.diagnose(w.sleepy, w.sleepy_inputs(), concurrency=[2], quick=True)
    assert [(c.role, c.repeat_of) for c in d.curves] == [
        ("gil-build", ""),
        ("gil-build", d.curves[0].label),  # the verdict's curve, again in a second process
    ]
    assert d.limited and "find-pythons.sh" in d.missing and "find-pythons.sh" in d.explanation


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="needs a callable"):
        ftpipe.diagnose(42, [1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one input"):
        ftpipe.diagnose(w.sleepy, [])
    with pytest.raises(ValueError, match="concurrency level .* must be a positive int, got 0"):
        ftpipe.diagnose(w.sleepy, [0.001], concurrency=[0, 2])
    with pytest.raises(TypeError, match="must be a positive int, got str '2'"):
        ftpipe.diagnose(w.sleepy, [0.001], concurrency=["2"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="configurations must be"):
        ftpipe.diagnose(w.sleepy, [0.001], configurations="all")


def test_configurations_on_this_interpreter() -> None:
    from ftpipe.diagnose._plan import plan

    configs, missing = plan()
    roles = [c.role for c in configs]
    if is_free_threaded():
        assert roles[:2] == ["no-gil", "gil"] and configs[0].executable == sys.executable
        # The no-GIL run starts as users start it (so an import may turn the GIL back on).
        assert "-X" not in configs[0].argv and configs[1].argv[1:3] == ["-X", "gil=1"]
    else:
        assert roles[0] == "gil-build" and "-X" not in configs[0].argv
        assert roles[1:] in (["no-gil", "gil"], []) and bool(missing) == (roles[1:] == [])


OLD_EXTENSION = """
#include <Python.h>
static PyObject* ident(PyObject* self, PyObject* arg) { Py_INCREF(arg); return arg; }
static PyMethodDef methods[] = {{"ident", ident, METH_O, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "oldext", NULL, -1, methods};
PyMODINIT_FUNC PyInit_oldext(void) { return PyModule_Create(&mod); }
"""


@needs_free_threaded
@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
@pytest.mark.timeout(120)
def test_an_import_that_reenables_the_gil_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An extension without free-threading support (no Py_mod_gil slot): CPython turns the
    # GIL back on when it is imported, unless -X gil=0 forces it off.
    (tmp_path / "oldext.c").write_text(OLD_EXTENSION)
    paths = sysconfig.get_paths()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    subprocess.run(
        [
            "cc",
            "-shared",
            "-fPIC",
            f"-I{paths['include']}",
            str(tmp_path / "oldext.c"),
            "-o",
            str(tmp_path / f"oldext{suffix}"),
        ],
        check=True,
        timeout=60,
    )
    (tmp_path / "uses_oldext.py").write_text(
        textwrap.dedent("""
        import os
        if os.environ.get("FTPIPE_DIAGNOSE_PROBE"):
            import oldext  # only in the probes: the test process keeps its GIL off
        def work(n):
            return sum(i * i for i in range(n))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import uses_oldext  # type: ignore[import-not-found]

    d = ftpipe.diagnose(uses_oldext.work, [2000] * 4, concurrency=[2], quick=True)
    default, forced = (
        next(c for c in d.curves if c.label == label) for label in ("3.13t", "3.13t gil=0 forced")
    )
    assert default.gil_enabled and default.gil_reenabled_by == ("oldext",)
    assert not forced.gil_enabled and forced.ok
    assert d.gil_reenabled_by == ("oldext",)
    assert "oldext re-enabled the GIL" in d.explanation


@pytest.mark.skipif(is_free_threaded(), reason="the GIL-build side of the comparison")
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_on_a_gil_build_the_free_threaded_interpreter_is_borrowed() -> None:
    from ftpipe.diagnose._plan import plan

    configs, missing = plan()
    if not any(c.free_threaded for c in configs):
        pytest.skip(f"no free-threaded interpreter on this machine: {missing}")
    d = diagnose_robustly(w.pure_python, w.pure_python_inputs(), quick=True)
    assert [c.role for c in d.curves if not c.repeat_of] == ["gil-build", "no-gil", "gil"]
    # The no-GIL curve the verdict leans on, measured again in a second process.
    assert [c.repeat_of for c in d.curves if c.repeat_of] == [d.curves[1].label]
    check_verdict(d, {Verdict.GIL_BOUND})
    # Threads will not help here; isolated workers will (no subinterpreters before 3.13).
    expected_here = "interpreter" if sys.version_info >= (3, 13) else "process"
    assert d.recommended_executor.this_interpreter == expected_here
    assert d.recommended_executor.free_threaded == "thread"
