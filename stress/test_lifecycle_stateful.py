"""The pipeline lifecycle as a hypothesis state machine.

Rules build, start, enter, iterate some, ``next()`` without ``iter()``, take stats,
close and re-iterate in any order, from the test thread or from several threads at
once (concurrent consumers, a close racing a consumer, a close racing a start).  A
small model says what each call must do:

- new: iterating or ``start()``/``with`` starts it; ``close()`` finishes it without running;
- running: items come out in order, each once (across all consumer threads);
- finished (exhausted, closed or failed): ``iter()``/``start()`` raise ``RuntimeError``
  naming the problem, ``next()`` raises ``StopIteration``; once ``close()`` has returned
  no pipeline thread is alive;
- exhausted (a ``StopIteration`` while running, not one from a closed pipeline): every
  item was delivered exactly once, and ``stats()`` counts every output.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import pytest
from _stage_fns import async_stage, gen_model, gen_stage, map_value, sleep_then
from _stress_support import bounded, ftpipe_threads
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import ftpipe
from conftest import PROFILE, count_example

BOUND_S = 30.0
SALT = 1


def expected_output(n: int, kind: str) -> list[Any]:
    values = list(range(n))
    if kind == "gen":
        return [y for v in values for y in gen_model(SALT, v)]
    if kind == "agg":
        return values
    return [map_value(v, SALT) for v in values]


def build(n: int, kind: str, concurrency: int, slow: bool) -> ftpipe.Pipeline:
    b = ftpipe.PipelineBuilder().add_source(range(n))
    if slow:
        b.pipe(functools.partial(sleep_then, 0.001), concurrency=2)
    if kind == "plain":
        b.pipe(functools.partial(_plain, SALT), concurrency=concurrency)
    elif kind == "async":
        b.pipe(functools.partial(async_stage, SALT, 0, 0.0), concurrency=concurrency)
    elif kind == "gen":
        b.pipe(functools.partial(gen_stage, SALT, 0, 0.0), concurrency=concurrency)
    else:
        b.aggregate(3).disaggregate()
    return b.add_sink(buffer_size=2).build()


def _plain(salt: int, x: int) -> int:
    return map_value(x, salt)


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pipeline: ftpipe.Pipeline | None = None
        self.state = "none"  # none | new | running | finished
        self.expected: list[Any] = []
        self.taken: list[Any] = []
        self.exhausted = False

    # -- building ---------------------------------------------------------------------------

    @initialize(
        n=st.integers(0, 40),
        kind=st.sampled_from(["plain", "async", "gen", "agg"]),
        concurrency=st.integers(1, 4),
        slow=st.booleans(),
    )
    def first_build(self, n: int, kind: str, concurrency: int, slow: bool) -> None:
        self._build(n, kind, concurrency, slow)

    @rule(
        n=st.integers(0, 40),
        kind=st.sampled_from(["plain", "async", "gen", "agg"]),
        concurrency=st.integers(1, 4),
        slow=st.booleans(),
    )
    def rebuild(self, n: int, kind: str, concurrency: int, slow: bool) -> None:
        self.close()
        self._build(n, kind, concurrency, slow)

    def _build(self, n: int, kind: str, concurrency: int, slow: bool) -> None:
        self.pipeline = build(n, kind, concurrency, slow)
        self.state = "new"
        self.expected = expected_output(n, kind)
        self.taken = []
        self.exhausted = False

    # -- starting ---------------------------------------------------------------------------

    @rule(use_with=st.booleans())
    def start(self, use_with: bool) -> None:
        assert self.pipeline is not None
        call = self.pipeline.__enter__ if use_with else self.pipeline.start
        if self.state == "finished":
            with pytest.raises(RuntimeError, match="already ran"):
                call()
        else:
            call()
            self.state = "running"

    # -- consuming --------------------------------------------------------------------------

    def _take(self, k: int, via_iter: bool) -> tuple[list[Any], bool]:
        """Take up to ``k`` items in this thread; also say whether ``next()`` raised StopIteration.

        The caller decides what a StopIteration means: the end of the stream only if the
        pipeline was running; a finished (e.g. closed) pipeline answers every ``next()``
        with StopIteration without having delivered everything.
        """
        assert self.pipeline is not None
        out = []
        it = iter(self.pipeline) if via_iter else self.pipeline
        for _ in range(k):
            try:
                out.append(next(it))
            except StopIteration:
                return out, True
        return out, False

    @rule(k=st.integers(0, 15), via_iter=st.booleans())
    def iterate(self, k: int, via_iter: bool) -> None:
        if self.state == "finished" and via_iter:
            with pytest.raises(RuntimeError, match="already ran"):
                iter(self.pipeline)
            return
        got, ended = bounded(lambda: self._take(k, via_iter), BOUND_S)
        if self.state == "finished":
            assert got == [], "a finished pipeline produced items"
            assert ended or k == 0, "next() on a finished pipeline did not raise StopIteration"
            return  # not an exhaustion: a closed pipeline stops early
        self.state = "running"
        self.taken.extend(got)
        if ended:
            self.exhausted = True
            self.state = "finished"

    @rule(k=st.integers(1, 10), threads=st.integers(2, 4))
    def iterate_from_threads(self, k: int, threads: int) -> None:
        if self.state == "finished":
            return
        assert self.pipeline is not None
        pipeline = self.pipeline
        if self.state == "new":
            pipeline.start()  # several threads starting at once is the start-race rule's job
            self.state = "running"
        results: list[list[Any]] = [[] for _ in range(threads)]
        ended = threading.Event()

        def consume(slot: list[Any]) -> None:
            for _ in range(k):
                try:
                    slot.append(next(pipeline))
                except StopIteration:
                    ended.set()
                    return

        def body() -> None:
            workers = [threading.Thread(target=consume, args=(r,)) for r in results]
            for w in workers:
                w.start()
            for w in workers:
                w.join()

        bounded(body, BOUND_S)
        got = [x for r in results for x in r]
        # Each consumer sees its own items in pipeline order.
        pos = (
            {v: i for i, v in enumerate(self.expected)}
            if len(set(self.expected)) == len(self.expected)
            else None
        )
        if pos is not None:
            for r in results:
                assert [pos[x] for x in r] == sorted(pos[x] for x in r), (
                    "a consumer saw items out of order"
                )
        self.taken.extend(got)
        if ended.is_set():
            self.exhausted = True
            self.state = "finished"

    @rule()
    def drain(self) -> None:
        if self.state == "finished":
            return
        got, ended = bounded(lambda: self._take(10**6, via_iter=True), BOUND_S)
        self.taken.extend(got)
        self.state = "finished"
        assert ended
        self.exhausted = True
        assert sorted(self.taken) == sorted(self.expected)

    # -- observing --------------------------------------------------------------------------

    @rule()
    def stats(self) -> None:
        assert self.pipeline is not None
        s = self.pipeline.stats()
        str(s)  # readable, never raises
        if self.state == "new":
            assert s.stages == () or all(st_.items_in == 0 for st_ in s.stages)
            return
        if not s.stages:
            return
        last = s.stages[-1]
        assert last.items_out >= 0 and all(x.items_in >= 0 for x in s.stages)
        if self.exhausted:
            assert last.items_out == len(self.expected), str(s)

    @rule(k=st.integers(1, 20))
    def stats_while_another_thread_iterates(self, k: int) -> None:
        if self.state != "running":
            return
        assert self.pipeline is not None
        pipeline = self.pipeline
        taken: list[Any] = []
        stop = threading.Event()
        ended = threading.Event()

        def consume() -> None:
            try:
                for _ in range(k):
                    taken.append(next(pipeline))
            except StopIteration:
                ended.set()  # the pipeline was running: this is the end of the stream
            finally:
                stop.set()

        def body() -> None:
            t = threading.Thread(target=consume)
            t.start()
            while not stop.is_set():
                str(pipeline.stats())
            t.join()

        bounded(body, BOUND_S)
        self.taken.extend(taken)
        if ended.is_set():
            self.exhausted = True
            self.state = "finished"

    # -- stopping ---------------------------------------------------------------------------

    @rule()
    def close(self) -> None:
        if self.pipeline is None:
            return
        bounded(self.pipeline.close, BOUND_S)
        self.state = "finished"
        self._no_threads_after_close()

    @rule(twice=st.booleans())
    def exit_with(self, twice: bool) -> None:
        assert self.pipeline is not None
        bounded(lambda: self.pipeline.__exit__(None, None, None), BOUND_S)
        if twice:
            bounded(lambda: self.pipeline.__exit__(None, None, None), BOUND_S)
        self.state = "finished"
        self._no_threads_after_close()

    @precondition(lambda self: self.state in ("new", "running"))
    @rule()
    def close_while_another_thread_iterates(self) -> None:
        assert self.pipeline is not None
        pipeline = self.pipeline
        if self.state == "new":
            pipeline.start()
        taken: list[Any] = []
        started = threading.Event()
        errors: list[BaseException] = []

        def consume() -> None:
            try:
                for x in pipeline:
                    taken.append(x)
                    started.set()
            except RuntimeError as exc:
                # Closed before this thread called iter(): "already ran" is the right
                # answer; any other RuntimeError is a bug to report.
                if "already ran" not in str(exc):
                    errors.append(exc)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                started.set()

        def body() -> None:
            t = threading.Thread(target=consume)
            t.start()
            started.wait()
            pipeline.close()
            t.join()

        bounded(body, BOUND_S)
        assert not errors, errors
        self.taken.extend(taken)
        self.state = "finished"
        self._no_threads_after_close()

    @precondition(lambda self: self.state == "new")
    @rule(starters=st.integers(1, 3))
    def close_racing_start(self, starters: int) -> None:
        """``start()`` from some threads while another closes: no thread may outlive close()."""
        assert self.pipeline is not None
        pipeline = self.pipeline
        barrier = threading.Barrier(starters + 1)
        errors: list[BaseException] = []

        def starter() -> None:
            barrier.wait()
            try:
                pipeline.start()
            except RuntimeError as exc:
                if "already ran" not in str(exc):  # lost the race: the right answer
                    errors.append(exc)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        def body() -> None:
            workers = [threading.Thread(target=starter) for _ in range(starters)]
            for w in workers:
                w.start()
            barrier.wait()
            pipeline.close()
            for w in workers:
                w.join()
            pipeline.close()  # whoever won, after this close() nothing runs

        bounded(body, BOUND_S)
        assert not errors, errors
        self.state = "finished"
        self._no_threads_after_close()

    # -- invariants -------------------------------------------------------------------------

    def _no_threads_after_close(self) -> None:
        alive = [t.name for t in ftpipe_threads() if t.is_alive()]
        assert not alive, f"close() returned with pipeline threads alive: {alive}"

    @invariant()
    def delivered_once_in_order(self) -> None:
        n = len(self.taken)
        assert n <= len(self.expected)
        # Ordered pipelines: everything delivered so far is exactly the first n outputs.
        assert sorted(self.taken) == sorted(self.expected[:n]), (
            "an item was lost, duplicated or reordered"
        )

    @invariant()
    def exhausted_only_after_everything(self) -> None:
        # ``exhausted`` is set only by a StopIteration while the pipeline was running (the
        # natural end of the stream), never by one from a closed pipeline: by then every
        # item has been delivered, exactly once across all consumers.
        if self.exhausted:
            assert sorted(self.taken) == sorted(self.expected), (
                "StopIteration before every item was delivered"
            )

    def teardown(self) -> None:
        count_example("lifecycle_state_machine")
        if self.pipeline is not None:
            bounded(self.pipeline.close, BOUND_S)
            self._no_threads_after_close()


Lifecycle.TestCase.settings = settings(
    max_examples={"ci": 150, "dev": 8}.get(PROFILE, 300),
    stateful_step_count=12,
)


def test_lifecycle() -> None:
    from conftest import soak

    soak(lambda: Lifecycle.TestCase().runTest())
