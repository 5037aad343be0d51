"""Functions the executor tests send to threads, subinterpreters and child processes.

Importable by name and free of numpy at import time, so a subinterpreter can
import this module (numpy refuses to load there).  No tests live here.
"""

from __future__ import annotations

import builtins
import os
import signal
import sys
import time
from typing import Any

_state: dict[str, Any] = {}


def square(x: int) -> int:
    return x * x


def identity(x: Any) -> Any:
    return x


def boom(x: Any) -> Any:
    raise ValueError(f"boom on {x!r}")


def fail_on(bad: int, x: int) -> int:
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def os_error_on(bad: int, kind: str, x: int) -> int:
    """Raise the ``OSError`` subclass named ``kind`` on input ``bad``."""
    if x == bad:
        error: type[OSError] = getattr(builtins, kind)
        raise error(2, f"{kind} on item {x}", f"/nonexistent/{x}")
    return x


def fail_with_array(x: Any) -> Any:
    """Raise an exception whose argument is a numpy array large enough for shared memory."""
    import numpy as np

    raise ValueError(f"array attached for {x!r}", np.full(1 << 18, 3, dtype=np.float32))


def getpid(_: Any = None) -> int:
    return os.getpid()


def with_pid(x: Any) -> tuple[Any, int]:
    return x, os.getpid()


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def sleep_then(seconds: float, x: Any = None) -> Any:
    time.sleep(seconds)
    return x


def kill_self(_: Any = None) -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # not reached


def exit_with(code: int) -> None:
    os._exit(code)


def set_state(value: Any) -> None:
    _state["value"] = value


def get_state(_: Any = None) -> Any:
    return _state.get("value")


def failing_initializer() -> None:
    raise RuntimeError("initializer says no")


def explode(x: int) -> list[int]:
    """Generator stage: yields x copies of x."""
    return [x] * x


def explode_gen(x: int) -> Any:
    for _ in range(x):
        yield x


def fragile_gen(x: int) -> Any:
    """Generator stage that fails at input 3."""
    if x == 3:
        raise KeyError("three")
    yield x


def numpy_double(x: Any) -> Any:
    import numpy as np

    return np.asarray(x) * 2


def numpy_array(n: int) -> Any:
    import numpy as np

    return np.full(n, 7, dtype=np.float32)


def numpy_sum(a: Any) -> float:
    return float(a.sum())


def has_path(entry: str) -> bool:
    return entry in sys.path


def unpicklable_result(_: Any = None) -> Any:
    import threading

    return threading.Lock()


class Adder:
    """A picklable callable object."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, x: int) -> int:
        return x + self.n


def unpicklable_if(bad: int, x: int) -> Any:
    """x back, except a lock (which does not pickle) for input ``bad``."""
    if x == bad:
        import threading

        return threading.Lock()
    return x


def fail_first_time(marker_dir: str, x: int) -> int:
    """Fail the first call for each ``x`` (remembered in a file, so across processes)."""
    import os

    path = os.path.join(marker_dir, f"seen-{x}")
    if not os.path.exists(path):
        open(path, "w").close()
        raise ValueError(f"first attempt at {x}")
    return x


def timed_sleep(seconds: float) -> float:
    """Sleep; return how long the call really took."""
    import time

    t0 = time.perf_counter()
    time.sleep(seconds)
    return time.perf_counter() - t0


def kill_self_on(bad: int, x: int) -> int:
    """x back, except that input ``bad`` kills the worker process."""
    if x == bad:
        kill_self()
    return x


class Payload:
    """An object that can be weakly referenced (for reference-leak tests)."""


def mark_then_sleep(job: tuple[str, float]) -> int:
    """Write ``<directory>/running-<pid>-<thread>``, then sleep: a long call one can see start."""
    import threading

    directory, seconds = job
    open(os.path.join(directory, f"running-{os.getpid()}-{threading.get_ident()}"), "w").close()
    time.sleep(seconds)
    return os.getpid()


def wait_for_marks(directory: str, count: int, timeout: float = 60.0) -> list[int]:
    """Wait until ``count`` calls of ``mark_then_sleep`` are running; return their pids.

    (Subinterpreters share one pid: it then appears once per call.)
    """
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(n.split("-")[1]) for n in os.listdir(directory) if n.startswith("running-")]
        if len(pids) >= count:
            return pids
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(pids)} of {count} calls started in {timeout} s")
        time.sleep(0.02)


def print_after(seconds: float, text: str) -> None:
    """Sleep, then print ``text`` to this process's stdout (a call whose end one can see)."""
    import sys

    time.sleep(seconds)
    sys.stdout.write(text + "\n")  # one write: lines from several threads never interleave
    sys.stdout.flush()


def mark_then_hold_the_gil(job: tuple[str, float]) -> int:
    """Like ``mark_then_sleep``, but the wait is one C call that never releases the GIL."""
    import threading

    directory, _ = job
    open(os.path.join(directory, f"running-{os.getpid()}-{threading.get_ident()}"), "w").close()
    return sum(range(10**11))  # minutes inside builtin sum(): no eval breaker, no GIL release


def slow_with_pid(x: Any) -> tuple[Any, int]:
    """``(x, pid)`` after 5 ms: slow enough that every worker of a pool gets calls."""
    time.sleep(0.005)
    return x, os.getpid()
