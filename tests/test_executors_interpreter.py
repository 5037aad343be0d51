"""InterpreterExecutor: isolated subinterpreters, importable functions, clear refusals."""

from __future__ import annotations

import functools
import sys
import textwrap
import threading
import time

import pytest

import ftpipe
import test_executors_workloads as w
from ftpipe.executors import InterpreterExecutor, RemoteTraceback, subinterpreters_available
from ftpipe.executors._callables import check_importable

needs_subinterpreters = pytest.mark.skipif(
    not subinterpreters_available(), reason="isolated subinterpreters need CPython 3.13+"
)


@pytest.mark.skipif(subinterpreters_available(), reason="this Python has subinterpreters")
def test_clear_error_without_subinterpreters() -> None:
    with pytest.raises(RuntimeError, match=r"3\.13.*executor='process'"):
        InterpreterExecutor(1)
    with pytest.raises(ValueError, match=r"stage 'sq'.*executor='process'"):
        ftpipe.PipelineBuilder().add_source([1]).pipe(w.square, executor="interpreter", name="sq")


@needs_subinterpreters
def test_map_exceptions_and_isolation() -> None:
    with InterpreterExecutor(2, name="interp") as ex:
        assert list(ex.map(w.square, range(10))) == [x * x for x in range(10)]
        with pytest.raises(ValueError, match="boom on 1") as info:
            ex.submit(w.boom, 1).result()
        assert isinstance(info.value.__cause__, RemoteTraceback)
        assert "subinterpreter" in str(info.value.__cause__)
        # Module state is per interpreter: setting it there does not touch ours.
        ex.submit(w.set_state, "inside").result()
        assert w.get_state() is None
        assert ex.submit(w.Adder(2), 1).result() == 3
        assert ex.submit(functools.partial(w.fail_on, 99), 4).result() == 4


@needs_subinterpreters
def test_initializer_runs_inside_each_interpreter() -> None:
    with InterpreterExecutor(1, initializer=w.set_state, initargs=(5,)) as ex:
        assert ex.submit(w.get_state).result() == 5
    assert w.get_state() is None


# writes and imports one module under a fixed name: copies in other threads race on it
@pytest.mark.thread_unsafe
@needs_subinterpreters
def test_runtime_sys_path_reaches_the_interpreters(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "late_module_xyz.py").write_text("def triple(x):\n    return 3 * x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import late_module_xyz

        with InterpreterExecutor(1) as ex:
            assert ex.submit(late_module_xyz.triple, 4).result() == 12
            assert ex.submit(w.has_path, str(tmp_path)).result() is True
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("late_module_xyz", None)


@needs_subinterpreters
def test_numpy_refusal_names_the_module_and_the_alternative() -> None:
    with InterpreterExecutor(1, name="np-stage") as ex:
        with pytest.raises(ImportError, match=r"np-stage.*numpy.*executor='process'") as info:
            ex.submit(w.numpy_array, 3).result()
        assert info.value.name is not None and info.value.name.startswith("numpy")
        assert ex.submit(w.square, 3).result() == 9  # the worker survives


# shares a module-scoped executor/endpoint or counts process-wide threads, workers or segments
@pytest.mark.thread_unsafe
def test_build_time_check_refuses_what_cannot_cross(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def nested(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="lambda"):
        check_importable(lambda x: x, "s1")
    with pytest.raises(TypeError, match="closure"):
        check_importable(nested, "s2")
    main_fn = type(w.square)(w.square.__code__, {"__name__": "__main__"}, "main_fn")
    main_fn.__module__ = "__main__"
    with pytest.raises(TypeError, match="__main__"):
        check_importable(main_fn, "s3")
    (tmp_path / "uses_numpy_mod.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            def f(x):
                return np.asarray(x)
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import uses_numpy_mod

        with pytest.raises(TypeError, match=r"stage 's4'.*numpy.*executor='process'"):
            check_importable(uses_numpy_mod.f, "s4")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("uses_numpy_mod", None)
    check_importable(w.square, "ok")  # importable, no numpy at module level


@needs_subinterpreters
def test_builder_rejects_lambdas_for_the_interpreter_kind() -> None:
    with pytest.raises(TypeError, match=r"stage 'bad'.*lambda"):
        ftpipe.PipelineBuilder().add_source([1]).pipe(
            lambda x: x, executor="interpreter", name="bad"
        )


@needs_subinterpreters
def test_workers_run_in_parallel_threads() -> None:
    with InterpreterExecutor(2, name="par") as ex:
        list(ex.map(w.spin, [10, 10]))
        names = {t.name for t in threading.enumerate() if t.name.startswith("par-")}
        assert names == {"par-0", "par-1"}


def _interpreters() -> int:
    import _interpreters  # type: ignore[import-not-found]

    return len(_interpreters.list_all())


# counts every subinterpreter of the process
@pytest.mark.thread_unsafe
@needs_subinterpreters
def test_close_returns_while_a_call_runs_on_and_the_interpreter_goes_after(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A subinterpreter inside a call cannot be interrupted.  close() used to wait
    # for the call (shutdown(wait=True) joined its worker thread); now it returns
    # and the worker thread destroys the interpreter once the call ends.
    before = _interpreters()
    pipeline = (
        ftpipe.PipelineBuilder()
        .add_source([(str(tmp_path), 3.0)])
        .pipe(w.mark_then_sleep, executor="interpreter", name="long")
        .build()
    )
    iter(pipeline)
    w.wait_for_marks(str(tmp_path), 1)
    start = time.monotonic()
    pipeline.close()
    assert time.monotonic() - start < 1.0
    assert _interpreters() > before  # still inside its call
    workers = [t for t in threading.enumerate() if t.name.startswith("long-")]
    for thread in workers:
        thread.join(10)  # the call's remaining seconds, then the interpreter is destroyed
    assert not any(t.is_alive() for t in workers)
    assert _interpreters() == before
