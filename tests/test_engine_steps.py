"""The tuner's decisions (_steps): executor moves and where the limit lies, on fake stages.

No threads and no timing: each test feeds the tuner's decisions the counters a window
would have measured, and checks the step it takes.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tuner_workloads as w
from ftpipe._engine import _steps as steps_module
from ftpipe._engine._config import FnKind
from ftpipe._engine._executor_kinds import executor_kind
from ftpipe._engine._resize import started
from ftpipe._engine._tuner import Tuner
from ftpipe._engine._tuning import GIL_BOUND, Sample, Trial
from ftpipe.executors import ProcessExecutor


class _Workforce:
    def __init__(self, size: int) -> None:
        self.size = size


class _Config:
    def __init__(self, name: str, fn: Any, auto: bool) -> None:
        self.name = name
        self.fn = fn
        self.fn_kind = FnKind.FUNCTION
        self.auto_concurrency = auto
        self.auto_executor = auto
        self.max_concurrency = None


class _Outbox:
    def ended(self) -> bool:
        return False


class _Stage:
    """What the tuner reads of a stage, with no threads behind it."""

    def __init__(self, index: int, fn: Any = w.compute, auto: bool = True, size: int = 1) -> None:
        self.index = index
        self.config = _Config(f"{index}:s", fn, auto)
        self.workforce = _Workforce(size)
        self.executor: Any = None
        self.executor_name = "thread"
        self.counters: list[Any] = []
        self.outbox = _Outbox()
        self.tuning = ""


@pytest.fixture(autouse=True)
def _processes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interpreter executor exists on 3.12+ only: without it every build reads alike."""
    monkeypatch.setattr(
        steps_module,
        "executor_kind",
        lambda name: None if name == "interpreter" else executor_kind(name),
    )


def _tuner(stages: list[_Stage], *, gil: bool = True, cores: float = 0.0) -> Tuner:
    switched: list[tuple[str, str | None, int]] = []

    def switch(stage: Any, name: str | None, n: int) -> None:
        switched.append((stage.config.name, name, n))
        stage.executor_name, stage.workforce.size = name or "thread", n

    def resize(stage: Any, n: int) -> None:
        stage.workforce.size = n

    tuner = Tuner(stages, threading.Event(), threading.Lock(), switch, resize)  # type: ignore[arg-type]
    tuner._gil, tuner._cores, tuner._process_cores = gil, 2, cores
    tuner.switched = switched  # type: ignore[attr-defined]
    return tuner


def _window(cpu_by_stage: dict[int, float]) -> dict[int, tuple[Sample, float]]:
    """One second's counters: each stage busy all of it, with this much CPU time."""
    out = {}
    for index, cpu in cpu_by_stage.items():
        s = Sample(items=100, busy=1.0, idle=0.0)
        s.cpu = cpu
        out[index] = (s, 1.0)
    return out


def test_the_rate_is_read_where_the_last_tuned_stage_puts_its_outputs() -> None:
    """A tuned stage then an aggregate: the rate counts items, not batches (16 batches
    took a slow loader a second per window; 16 items take a few milliseconds)."""
    tuned, batch, stack = _Stage(0), _Stage(1, auto=False), _Stage(2, auto=False)
    assert _tuner([tuned, batch, stack])._gauge is batch
    last = _Stage(1)
    assert _tuner([_Stage(0, auto=False), last])._gauge is last  # a tuned last stage: its inputs


def test_on_a_gil_build_at_one_core_the_stage_using_most_is_moved_first() -> None:
    """The process's threads use one core between them: the GIL is the ceiling, and the
    stage that holds it is tried off it at once, with no second-thread trial first."""
    light, heavy = _Stage(0), _Stage(1)
    tuner = _tuner([light, heavy], cores=0.95)
    step = tuner._next_step(_window({0: 0.2, 1: 0.7}), rate=100.0, seconds=1.0)
    assert step is not None and step.tuned.stage is heavy
    assert tuner.switched == [("1:s", "process", 2)]  # type: ignore[attr-defined]
    assert "holds the GIL: 0.95 cores" in heavy.tuning


@pytest.mark.parametrize(
    ("gil", "cores", "cpu"),
    [
        (True, GIL_BOUND - 0.1, 0.7),  # room left under the GIL: grow on threads first
        (False, 1.0, 0.9),  # no GIL: threads run in parallel
        (True, 1.0, 0.3),  # no stage uses most of the core (the consumer does)
    ],
)
def test_no_gil_bound_move_when_the_gil_is_not_the_ceiling(
    gil: bool, cores: float, cpu: float
) -> None:
    stage = _Stage(0)
    tuner = _tuner([stage], gil=gil, cores=cores)
    assert tuner._gil_holder(_window({0: cpu}), seconds=1.0) is None


def test_an_undone_move_is_retried_once_the_limit_moves_and_never_after_two() -> None:
    """A move judged while another stage limited can fail for that reason alone: it is
    tried again once forgiven (the old code gave up on moves after one failure)."""
    stage = _Stage(0)
    tuner = _tuner([stage], cores=1.0)
    t = tuner._tuned[0]
    window = _window({0: 0.9})
    for undo in range(2):
        trial = tuner._next_step(window, rate=100.0, seconds=1.0)
        assert trial is not None and stage.executor_name == "process", undo
        assert tuner._judge(trial, 100.0, 0.0, 0.0) is None  # one more window
        assert tuner._judge(trial, 90.0, 0.0, 0.0) == 100.0  # undone
        assert stage.executor_name == "thread" and not t.done_switching
        assert tuner._gil_holder(window, 1.0) is t and tuner._move(t, window, 100.0, True) is None
        t.forgive()
    assert tuner._move(t, window, 100.0, gil_bound=True) is None  # undone twice: stays out


def test_a_move_is_kept_at_once_when_another_stage_then_limits() -> None:
    stage = _Stage(0)
    tuner = _tuner([stage], cores=1.0)
    trial = tuner._next_step(_window({0: 0.9}), rate=100.0, seconds=1.0)
    assert trial is not None
    assert tuner._judge(trial, 104.0, 0.0, 0.0, other_limits=True) == 104.0  # one window
    assert stage.executor_name == "process" and tuner._tuned[0].done_switching


def test_a_kept_gain_lets_the_other_stages_retry_what_failed() -> None:
    """A step that raised the rate moved the limit: a size another stage failed at
    (because this one limited) may help now.  Undone twice still stays out."""
    first, second = _Stage(0), _Stage(1, fn=w.sleep_3ms)
    tuner = _tuner([first, second])
    t1, t2 = tuner._tuned
    t2.fail(("thread", 32))
    t2.fail(("thread", 64))
    t2.fail(("thread", 64))
    first.workforce.size = 2
    tuner._judge(Trial(t1, "thread", 1, 100.0), 250.0, 0.0, 0.0)  # kept: x2.5
    assert first.workforce.size == 2
    assert t2.failed == {("thread", 64)}


@pytest.mark.parametrize(("cpu_share", "first_step"), [(0.01, 8), (0.2, 4)])
def test_a_stage_that_hardly_uses_cpu_takes_a_x8_first_step(
    cpu_share: float, first_step: int
) -> None:
    stage = _Stage(0, fn=w.sleep_3ms)
    tuner = _tuner([stage], gil=False)
    t = tuner._tuned[0]
    t.computes, t.cpu_share = False, cpu_share
    assert tuner._grow(t, rate=100.0, cpu=cpu_share, busy=1.0) is not None
    assert stage.workforce.size == first_step


def test_a_new_pool_starts_its_workers_before_the_old_generation_retires() -> None:
    """The tuner moves a stage to processes: the pool's workers start (and import) while
    the stage's threads still work.  Lazily started, the stage stalled for a process
    start-up after each move (about 0.5 s on 3.11 with numpy imported)."""
    pool = ProcessExecutor(2, name="warm")
    try:
        assert pool.worker_pids() == []
        started(pool, 2)
        assert len(pool.worker_pids()) == 2
        assert pool.submit(abs, -3).result(timeout=30) == 3
    finally:
        pool.shutdown(wait=True)


def test_a_stage_with_room_is_not_stepped_while_the_busiest_cannot_step() -> None:
    """The busiest stage limits the rate; another with room to spare (busy under 0.9)
    limits nothing: the old code grew it anyway (a 3 ms wait stage tried x64 while a
    compute stage at its cores limited, and the trial cost the pipeline a third)."""
    compute, wait = _Stage(0), _Stage(1, fn=w.sleep_3ms)
    tuner = _tuner([compute, wait], gil=False)
    tuner._tuned[0].failed.add(("thread", 2))  # the busiest cannot step
    window = _window({0: 0.9})
    idle = Sample(items=100, busy=0.8, idle=0.2)
    window[1] = (idle, 0.8)
    assert tuner._next_step(window, rate=100.0, seconds=1.0) is None
    busy = Sample(items=100, busy=0.95, idle=0.05)
    window[1] = (busy, 0.95)
    step = tuner._next_step(window, rate=100.0, seconds=1.0)
    assert step is not None and step.tuned.stage is wait
