"""The verdict logic on synthetic curves: fast and deterministic (real probes: test_diagnose_api)."""

from __future__ import annotations

import dataclasses

import pytest

from ftpipe.diagnose import Curve, Point, Verdict
from ftpipe.diagnose._capacity import Capacity
from ftpipe.diagnose._plan import HOW_TO_GET_FT
from ftpipe.diagnose._shape import ideal_speedup, shape
from ftpipe.diagnose._verdict import Decision, decide


def curve(
    role: str,
    speedups: list[float],
    *,
    growth: list[float] | None = None,
    busy1: float = 1.0,
    neighbour: float = 0.0,
    gil: bool | None = None,
    label: str | None = None,
    status: str = "ok",
    numpy: bool = False,
    starved: float | None = None,
) -> Curve:
    """A curve at concurrency 1, 2, 4 from speedups and CPU-per-item growth (relative to 1 thread)."""
    growth = growth or [1.0] * len(speedups)
    base_rate, base_cpu = 1000.0, busy1 / 1000.0
    points = []
    for c, s, g in zip((1, 2, 4), speedups, growth, strict=False):
        rate, cpu = base_rate * s, base_cpu * g
        points.append(
            Point(c, rate, cpu, c / rate, rate * cpu, neighbour, 0.05, 3, 300, 50.0, (), starved)
        )
    gil_on = role != "no-gil" if gil is None else gil
    return Curve(
        label or f"{role}",
        role,
        "/x/python",
        "3.13.5",
        role != "gil-build",
        gil_on,
        status=status,
        message="" if status == "ok" else "boom",
        points=tuple(points) if status == "ok" else (),
        uses_numpy=numpy,
    )


def verdict(*curves: Curve, cores: int = 2, here_ft: bool = True, here_off: bool = True) -> Verdict:
    return decide(
        curves, cores=cores, here_free_threaded=here_ft, here_gil_off=here_off, subinterpreters=True
    ).verdict


# The measured signatures from the issue (2 cores, concurrency 2 over 1).
@pytest.mark.parametrize(
    ("no_gil", "gil", "expected"),
    [
        (curve("no-gil", [1, 1.68, 1.7]), curve("gil", [1, 1.00, 1.0]), Verdict.GIL_BOUND),  # loop
        (curve("no-gil", [1, 1.93, 1.9]), curve("gil", [1, 0.95, 0.9]), Verdict.GIL_BOUND),  # json
        (curve("no-gil", [1, 1.91, 1.9]), curve("gil", [1, 1.78, 1.8]), Verdict.SCALES),  # hashlib
        (
            curve("no-gil", [1, 1.0, 1.0]),
            curve("gil", [1, 1.0, 1.0]),
            Verdict.BLOCKING_CONTENTION,
        ),  # lock
        (
            curve("no-gil", [1, 0.76, 0.7], growth=[1, 2.1, 2.2]),
            curve("gil", [1, 1.0, 1.0]),
            Verdict.FT_REGRESSION,
        ),  # shared dict
        (
            curve("no-gil", [1, 1.0, 1.0], busy1=1.95),
            curve("gil", [1, 1.0, 1.0], busy1=1.95),
            Verdict.INTERNALLY_PARALLEL,
        ),  # numpy matmul
        (
            curve("no-gil", [1, 2.0, 3.9], busy1=0.02),
            curve("gil", [1, 2.0, 3.9], busy1=0.02),
            Verdict.SCALES,
        ),  # sleep
    ],
    ids=["loop", "json", "hashlib", "lock", "shared-dict", "matmul", "sleep"],
)
def test_measured_signatures(no_gil: Curve, gil: Curve, expected: Verdict) -> None:
    assert verdict(no_gil, gil) is expected


def test_partial_scaling_without_the_gil_is_still_gil_bound() -> None:
    # 1.45x without the GIL (something else caps the rest), flat with it: the GIL is the main limit.
    no_gil = curve("no-gil", [1, 1.45, 1.45], growth=[1, 1.05, 1.05])
    assert verdict(no_gil, curve("gil", [1, 1.0, 1.0])) is Verdict.GIL_BOUND
    # ... but 1.1x is not a clear gain: threads wait on something else.
    no_gil = curve("no-gil", [1, 1.1, 1.1])
    assert verdict(no_gil, curve("gil", [1, 1.0, 1.0])) is Verdict.BLOCKING_CONTENTION


def test_compute_contention_when_both_interfere() -> None:
    # Sub-linear on both, CPU per item growing, and no worse without the GIL (memory bandwidth).
    no_gil = curve("no-gil", [1, 1.2, 1.2], growth=[1, 1.6, 1.7])
    gil = curve("gil", [1, 1.15, 1.1], growth=[1, 1.6, 1.7])
    assert verdict(no_gil, gil) is Verdict.COMPUTE_CONTENTION


def test_busy_machine_is_inconclusive_not_blocking() -> None:
    # Flat, CPU per item flat, but other processes filled the second core: we cannot tell.
    no_gil = curve("no-gil", [1, 1.0, 1.0], neighbour=1.0)
    gil = curve("gil", [1, 1.0, 1.0], neighbour=1.0)
    d = decide(
        (no_gil, gil), cores=2, here_free_threaded=True, here_gil_off=True, subinterpreters=True
    )
    assert d.verdict is Verdict.INCONCLUSIVE
    assert "busy" in d.explanation


def _with_rounds(c: Curve, rounds: dict[int, tuple[float, ...]]) -> Curve:
    """``c`` with the given per-round throughputs (as fractions of its median) at some levels."""
    points = []
    for p in c.points:
        if p.concurrency in rounds:
            samples = tuple(p.items_per_s * f for f in rounds[p.concurrency])
            spread = (max(samples) - min(samples)) / p.items_per_s
            p = dataclasses.replace(p, samples=samples, spread=spread, rounds=len(samples))
        points.append(p)
    return dataclasses.replace(c, points=tuple(points))


def test_rounds_that_scatter_at_a_compared_level_make_it_inconclusive() -> None:
    no_gil = curve("no-gil", [1, 1.68, 1.7])
    gil = curve("gil", [1, 1.0, 1.0])
    scattered = _with_rounds(no_gil, {2: (0.6, 1.0, 1.4)})
    d = decide(
        (scattered, gil), cores=2, here_free_threaded=True, here_gil_off=True, subinterpreters=True
    )
    assert d.verdict is Verdict.INCONCLUSIVE
    assert "no-gil at 2 threads" in d.explanation and "busy" in d.explanation


def test_scattered_rounds_that_cannot_change_the_verdict_keep_it() -> None:
    # 50x the CPU per item without the GIL: however the GIL curve's rounds scatter,
    # the no-GIL build is the worse one.
    no_gil = curve("no-gil", [1, 0.02, 0.02], growth=[1, 57, 60])
    gil = _with_rounds(curve("gil", [1, 1.08, 1.0]), {2: (0.7, 1.0, 1.3)})
    assert verdict(no_gil, gil) is Verdict.FT_REGRESSION


def test_one_disturbed_round_or_a_noisy_level_past_the_cores_still_gives_a_verdict() -> None:
    # One round in five lost 45% (a neighbour's burst): the median stands.
    no_gil = _with_rounds(curve("no-gil", [1, 1.68, 1.7]), {2: (1.0, 0.98, 1.02, 0.55, 1.01)})
    # The level past the core count (4 threads on 2 cores) does not decide the verdict.
    gil = _with_rounds(curve("gil", [1, 1.0, 1.0]), {4: (0.5, 1.0, 1.6)})
    assert verdict(no_gil, gil) is Verdict.GIL_BOUND


def test_a_starved_single_thread_does_not_fake_a_speedup() -> None:
    # One thread got 0.6 core (others used 1.4), two got 1.0: "1.67x" is the neighbours leaving.
    starved = curve("gil", [1, 1.67, 1.67], busy1=0.6, neighbour=1.4)
    no_gil = curve("no-gil", [1, 1.9, 1.9])
    assert verdict(no_gil, starved) is Verdict.INCONCLUSIVE


def test_run_queue_wait_tells_starved_from_serialized() -> None:
    # Same flat curves: with the workers never waiting for a CPU it is a lock; with them
    # waiting (other processes had the cores) nothing can be said.
    quiet = (
        curve("no-gil", [1, 1.0, 1.0], starved=0.02),
        curve("gil", [1, 1.0, 1.0], starved=0.02),
    )
    assert verdict(*quiet) is Verdict.BLOCKING_CONTENTION
    busy = (curve("no-gil", [1, 1.0, 1.0], starved=0.8), curve("gil", [1, 1.0, 1.0], starved=0.8))
    assert verdict(*busy) is Verdict.INCONCLUSIVE
    # Others' CPU use alone does not make it inconclusive when our threads never waited:
    # they filled the core the GIL left idle.
    gil_on = curve("gil", [1, 1.0, 1.0], neighbour=1.0, starved=0.05)
    assert verdict(curve("no-gil", [1, 1.8, 1.8], starved=0.05), gil_on) is Verdict.GIL_BOUND


def test_some_waiting_for_a_cpu_that_cannot_explain_the_curve_is_ignored() -> None:
    # Seen here with --quick on a busy machine: json with the GIL on ran 0.63x with CPU per
    # item 1.59x while its threads waited 0.36 cores' worth for a CPU; that CPU could not
    # have made it scale, so the verdict stands.
    no_gil = curve("no-gil", [1, 1.92, 1.9], starved=0.0)
    gil = curve("gil", [1, 0.63, 0.6], growth=[1, 1.59, 1.6], starved=0.36)
    assert verdict(no_gil, gil) is Verdict.GIL_BOUND
    # A shared lock: 0.65x without the GIL (waited 0.45), 1.03x with it: blocking, not a
    # regression (lock hand-offs simply cost more without the GIL).
    lock_n = curve("no-gil", [1, 0.65, 0.6], growth=[1, 1.2, 1.2], busy1=0.97, starved=0.45)
    lock_g = curve("gil", [1, 1.03, 1.0], starved=0.0)
    assert verdict(lock_n, lock_g) is Verdict.BLOCKING_CONTENTION


def test_pathological_shared_dict_is_contention_not_blocking() -> None:
    # Seen here under load: 2 threads 0.01x, CPU per item 83x, one core busy (lock hand-offs).
    no_gil = curve("no-gil", [1, 0.01, 0.01], growth=[1, 83, 80])
    gil = curve("gil", [1, 0.05, 0.05], growth=[1, 20, 20])
    assert verdict(no_gil, gil) in (Verdict.COMPUTE_CONTENTION, Verdict.FT_REGRESSION)


def test_a_shared_dict_whose_second_thread_parks_is_a_regression_not_a_lock() -> None:
    # Seen in CI: 0.65x without the GIL with CPU per item 1.84x and one core busy (the
    # dict's per-object lock parked a thread), 1.13x with the GIL: the shared object.
    no_gil = curve("no-gil", [1, 0.65, 0.6], growth=[1, 1.84, 1.9], busy1=0.97)
    gil = curve("gil", [1, 1.13, 1.1], growth=[1, 0.9, 0.9], busy1=0.93)
    assert verdict(no_gil, gil) is Verdict.FT_REGRESSION
    # The same flat curves with CPU per item as a lock's waiters leave it: a lock.
    no_gil = curve("no-gil", [1, 0.65, 0.6], growth=[1, 1.2, 1.2], busy1=0.97)
    assert verdict(no_gil, gil) is Verdict.BLOCKING_CONTENTION


def test_one_core_is_inconclusive() -> None:
    assert (
        verdict(curve("no-gil", [1, 1, 1]), curve("gil", [1, 1, 1]), cores=1)
        is Verdict.INCONCLUSIVE
    )


def test_gil_build_only_gives_limited_verdicts() -> None:
    flat = curve("gil-build", [1, 1.0, 1.0])
    d = decide(
        (flat,),
        cores=2,
        here_free_threaded=False,
        here_gil_off=False,
        subinterpreters=True,
        missing=HOW_TO_GET_FT,
    )
    assert d.verdict is Verdict.INCONCLUSIVE and d.limited
    assert "python3.13t" in d.missing and "find-pythons.sh" in d.explanation
    fast = curve("gil-build", [1, 1.9, 1.9])
    d = decide((fast,), cores=2, here_free_threaded=False, here_gil_off=False, subinterpreters=True)
    assert d.verdict is Verdict.SCALES and d.limited


def test_gil_bound_advice_on_a_gil_build() -> None:
    no_gil, stock = curve("no-gil", [1, 1.9, 1.9]), curve("gil-build", [1, 1.0, 1.0])
    d = decide(
        (stock, no_gil), cores=2, here_free_threaded=False, here_gil_off=False, subinterpreters=True
    )
    assert d.verdict is Verdict.GIL_BOUND
    assert (d.advice.this_interpreter, d.advice.free_threaded) == ("interpreter", "thread")
    assert d.best_concurrency == 2
    numpy_stock = curve("gil-build", [1, 1.0, 1.0], numpy=True)
    d = decide(
        (numpy_stock, no_gil),
        cores=2,
        here_free_threaded=False,
        here_gil_off=False,
        subinterpreters=True,
    )
    assert d.advice.this_interpreter == "process"


def test_failed_configuration_is_reported_and_skipped() -> None:
    broken = curve("gil-build", [], status="import-error")
    d = decide(
        (curve("no-gil", [1, 1.9, 1.9]), curve("gil", [1, 1.0, 1.0]), broken),
        cores=2,
        here_free_threaded=True,
        here_gil_off=True,
        subinterpreters=True,
    )
    assert d.verdict is Verdict.GIL_BOUND
    assert any("import-error" in n for n in d.notes)


def test_gil_reenabled_by_an_import_is_named() -> None:
    on_anyway = curve("no-gil", [1, 1.0, 1.0], gil=True)
    on_anyway = Curve(**{**on_anyway.__dict__, "gil_reenabled_by": ("legacy_ext",)})
    d = decide(
        (on_anyway, curve("gil", [1, 1.0, 1.0])),
        cores=2,
        here_free_threaded=True,
        here_gil_off=True,
        subinterpreters=True,
    )
    assert "legacy_ext" in d.explanation
    assert d.verdict is Verdict.INCONCLUSIVE  # no run without the GIL: cannot tell GIL from lock


def test_a_few_percent_more_past_the_core_count_is_not_a_reason_for_more_threads() -> None:
    # Pure Python on 2 cores: 4 threads measured 5.6% above 2 (noise, and the rounds agree).
    d = decide(
        (curve("no-gil", [1, 1.80, 1.90]), curve("gil", [1, 1.0, 1.0])),
        cores=2,
        here_free_threaded=True,
        here_gil_off=True,
        subinterpreters=True,
    )
    assert d.verdict is Verdict.GIL_BOUND and d.best_concurrency == 2


def test_waiting_work_recommends_more_threads_than_cores() -> None:
    d = decide(
        (curve("no-gil", [1, 2.0, 3.9], busy1=0.02), curve("gil", [1, 2.0, 3.9], busy1=0.02)),
        cores=2,
        here_free_threaded=True,
        here_gil_off=True,
        subinterpreters=True,
    )
    assert d.best_concurrency == 4
    assert "past the core count" in d.explanation


def test_shape_names_the_numbers() -> None:
    s = shape(curve("no-gil", [1, 1.68, 1.7]), cores=2)
    assert s is not None and s.kind == "linear" and s.k == 2
    assert s.speedup == pytest.approx(1.68)


def test_verdict_values_are_the_documented_labels() -> None:
    assert [v.value for v in Verdict] == [
        "scales",
        "gil-bound",
        "blocking-contention",
        "compute-contention",
        "internally-parallel",
        "ft-regression",
        "inconclusive",
    ]
    assert str(Verdict.GIL_BOUND) == "gil-bound" and Verdict("gil-bound") is Verdict.GIL_BOUND


# -- the measured parallel capacity as the ideal speedup ---------------------------------------


def _decide_with(capacity: Capacity | None, *curves: Curve) -> Decision:
    return decide(
        curves,
        cores=2,
        here_free_threaded=True,
        here_gil_off=True,
        subinterpreters=True,
        capacity=capacity,
    )


def test_a_machine_that_cannot_run_two_things_at_once_gives_no_verdict() -> None:
    # These curves say gil-bound on 2 real cores; with 2 processes getting 1.2x, they
    # say nothing, and the explanation says why.
    curves = (curve("no-gil", [1, 1.68, 1.7]), curve("gil", [1, 1.0, 1.0]))
    assert _decide_with(None, *curves).verdict is Verdict.GIL_BOUND
    d = _decide_with(Capacity(2, 1.2), *curves)
    assert d.verdict is Verdict.INCONCLUSIVE
    assert "1.20x" in d.explanation and "two things at once" in d.explanation


def test_the_measured_capacity_is_the_ideal_speedup() -> None:
    # 1.25x at 2 threads is not scaling against 2 cores (0.63 of ideal) but is against
    # a machine where 2 processes got 1.55x (0.81 of ideal).
    curves = (curve("no-gil", [1, 1.25, 1.25]), curve("gil", [1, 0.95, 0.95]))
    assert _decide_with(None, *curves).verdict is Verdict.BLOCKING_CONTENTION
    d = _decide_with(Capacity(2, 1.55), *curves)
    assert d.verdict is Verdict.GIL_BOUND
    assert "1.55x" in d.explanation
    assert ideal_speedup(2, 2, Capacity(2, 1.6)) == pytest.approx(1.6)
    assert ideal_speedup(4, 2, Capacity(2, 2.3)) == 2.0  # never above the cores
    assert ideal_speedup(2, 2, None) == 2.0


def test_capacity_round_trips_through_json() -> None:
    from ftpipe.diagnose import Diagnosis, ExecutorAdvice

    d = Diagnosis(
        function="m:f",
        verdict=Verdict.SCALES,
        explanation="x",
        curves=(),
        best_concurrency=2,
        recommended_executor=ExecutorAdvice("thread", "thread"),
        parallel_capacity=1.874,
        capacity_level=2,
    )
    data = d.to_dict()
    assert data["parallel_capacity"] == {"processes": 2, "speedup": 1.874}
    back = Diagnosis.from_dict(data)
    assert back.parallel_capacity == 1.874 and back.capacity_level == 2
