"""``ProcessExecutor``: each worker thread owns one persistent child process.

Data flow of one call (one call in flight per worker, so a worker needs no
bookkeeping of its own)::

    caller thread                  worker thread i                         child process i
    submit(fn, x) --work queue-->  Endpoint.dumps((fn, args, kwargs))
                                     | large buffers: memcpy -> <prefix>p<n> (reused segment)
                                     +--- pipe: small pickle naming segments ----> loads: cached mmap,
                                                                                   arrays view it
                                                                                   out = fn(*args)
                                                                                   dumps(out): memcpy -> <prefix>c<n>
                                   loads: cached mmap  <--- pipe: reply + "released: ..." --+
    future.result() <------------- result arrays view the segment (no copy); when they die,
                                   the next request tells the child it may reuse it

Failure paths:

- ``fn`` raises: the exception is pickled back with its formatted traceback
  (set as ``__cause__``, like ``ProcessPoolExecutor``) and fails that call only.
- The child dies (signal, ``os._exit``, OOM killer): its end of the pipe closes,
  the worker thread's ``recv`` wakes at once with EOF, reaps the child and
  raises ``BrokenWorkerError`` naming the executor and the exit code / signal.
  The pool then fails every queued call and refuses new ones.
- A pipeline stops the executor it created (``_terminate``): a child inside a
  call is killed at once (``interrupt``), and its worker thread sees EOF as above.
- Whatever happens, the worker thread reaps its child and unlinks every
  segment with its prefix that nobody attached (``_segments.remove_segments``).

Workers start with ``forkserver`` (Linux) or ``spawn``, never ``fork``: forking a
process with threads can copy a lock held by another thread.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from typing import Any

from .._engine._calls import call_chunk, unpack_failures
from .._priority import NORMAL, Scheduling, start_forkserver_here
from . import _segments, _shm
from ._children import new_process
from ._context import BrokenWorkerError, WorkerContext
from ._pool import WorkerPool
from ._remote import unpack_exception

__all__ = ["ProcessExecutor", "default_start_method", "describe_exit"]

# Process.start() touches multiprocessing's module-level bookkeeping (the set of
# children, the forkserver connection); worker threads start children at once.
_start_lock = threading.Lock()
_REAP_TIMEOUT = 2.0


def default_start_method() -> str:
    """``forkserver`` where the platform has it, else ``spawn``."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def describe_exit(exitcode: int | None) -> str:
    """Say how a process ended: ``killed by signal SIGKILL (exit code -9)`` or ``exited with code 3``."""
    if exitcode is None:
        return "stopped responding"
    if exitcode < 0:
        try:
            sig = signal.Signals(-exitcode).name
        except ValueError:
            sig = f"signal {-exitcode}"
        return f"was killed by signal {sig} (exit code {exitcode})"
    return f"exited with code {exitcode}"


def reap(proc: Any, timeout: float = _REAP_TIMEOUT) -> int | None:
    """Join ``proc``; terminate, then kill it if it does not exit in time.  Return its exit code."""
    proc.join(timeout)
    if proc.exitcode is None:
        proc.terminate()
        proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
    return proc.exitcode  # type: ignore[no-any-return]


class ProcessContext:
    """A worker context that runs each call in the worker thread's own child process."""

    def __init__(
        self,
        name: str,
        prefix: str,
        start_method: str,
        initializer: Callable[..., Any] | None,
        initargs: tuple[Any, ...],
        scheduling: Scheduling = NORMAL,
    ) -> None:
        self._name = name
        self._prefix = prefix
        self._scheduling = scheduling
        self._start_method = start_method
        self._init = (initializer, initargs)
        self._endpoint = _shm.Endpoint(f"{prefix}p")
        self._proc: Any = None
        self._pid: int | None = None
        self._conn: Connection | None = None
        # Guards _busy and _interrupted: interrupt() (any thread) kills the child
        # only while the worker thread waits on it, and no call starts after it.
        self._lock = threading.Lock()
        self._busy = False
        self._interrupted = False

    @property
    def pid(self) -> int | None:
        """The child's process id once started."""
        return self._pid

    def initialize(self) -> None:
        from ._process_child import worker_main

        if self._interrupted:  # terminated before this worker got going: start nothing
            raise BrokenWorkerError(
                f"process executor {self._name!r} was stopped before its worker started",
                name=self._name,
            )
        ctx = multiprocessing.get_context(self._start_method)
        parent_end, child_end = ctx.Pipe(duplex=True)
        self._conn = parent_end
        self._proc = new_process(
            ctx,
            target=worker_main,
            args=(child_end, self._prefix, pickle.dumps(self._init, protocol=5), self._scheduling),
            name=f"ftpipe:{self._name}",
        )
        with _start_lock:
            self._proc.start()
        # Our copy of the child's end must close, or EOF would never reach us when it dies.
        child_end.close()
        with self._lock:
            self._pid = self._proc.pid
            self._busy = True  # the initializer may take long: interrupt() may cut it short
            if self._interrupted:
                self._kill()
        try:
            ok, value, tb = self._receive()
        finally:
            with self._lock:
                self._busy = False
        if not ok:
            raise unpack_exception(value, tb, "process", self._name)

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            message = self._endpoint.dumps((fn, args, kwargs))
        except Exception as exc:
            raise TypeError(
                f"process executor {self._name!r}: cannot send {fn!r} and its arguments to a "
                f"worker process: {type(exc).__name__}: {exc}"
            ) from exc
        assert self._conn is not None
        with self._lock:
            stopped = self._interrupted
            self._busy = not stopped
        if stopped:  # the child is idle and alive: finalize() stops it
            raise BrokenWorkerError(
                f"process executor {self._name!r} was stopped before running {_label(fn, args)}",
                name=self._name,
            )
        try:
            try:
                self._conn.send_bytes(message)
            except OSError as exc:  # the child died while idle
                raise self._broken(f"before running {_label(fn, args)}") from exc
            del message
            ok, value, tb = self._receive(fn, args)
        finally:
            with self._lock:
                self._busy = False
        if ok:
            return unpack_failures(value, self._unpack) if fn is call_chunk else value
        raise self._unpack(value, tb)

    def _unpack(self, exc: BaseException, tb: str) -> BaseException:
        return unpack_exception(exc, tb, "process", self._name)

    def _receive(
        self, fn: Callable[..., Any] | None = None, args: tuple[Any, ...] = ()
    ) -> tuple[Any, Any, str]:
        """The reply to the call of ``fn`` (None: to starting the worker)."""
        assert self._conn is not None
        try:
            reply = self._conn.recv_bytes()
        except (EOFError, OSError) as exc:
            doing = "while starting" if fn is None else f"while running {_label(fn, args)}"
            raise self._broken(doing) from exc
        return self._endpoint.loads(reply)  # type: ignore[no-any-return]

    def _broken(self, doing: str) -> BrokenWorkerError:
        code = reap(self._proc)
        # A plain read: set once, never cleared; it only picks the wording.
        how = (
            "was stopped (its executor was terminated)"
            if self._interrupted
            else describe_exit(code)
        )
        return BrokenWorkerError(
            f"process executor {self._name!r}: worker process {self._proc.pid} {how} {doing}",
            name=self._name,
            exitcode=code,
        )

    def exited(self) -> bool:
        """True once the started child has ended (killed, crashed), before any call notices.

        An idle worker thread waits on its queue, not on the child, so a child
        killed between calls is only found by the next call; its sentinel is
        readable from the moment it exits (select only: nothing is read).
        """
        proc = self._proc
        if proc is None:
            return False
        try:
            return bool(multiprocessing.connection.wait([proc.sentinel], timeout=0))
        except (ValueError, OSError):  # not started yet, or closed by its exiting worker thread
            return False

    def interrupt(self) -> bool:
        # A killed child's worker thread reads EOF at once: it stops promptly either way.
        with self._lock:
            self._interrupted = True
            if self._busy:
                self._kill()
        return True

    def _kill(self) -> None:
        assert self._pid is not None
        try:
            os.kill(self._pid, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass

    def finalize(self) -> None:
        if self._proc is not None and self._proc.exitcode is None and self._conn is not None:
            try:
                self._conn.send_bytes(b"")  # please stop
            except OSError:
                pass
        if self._proc is not None and self._proc.pid is not None:  # it was started
            reap(self._proc)
            self._proc.close()
        if self._conn is not None:
            self._conn.close()
        # Both sides' segments: live views keep their mappings, names must go.
        self._endpoint.close()
        _segments.remove_segments(self._prefix)


def _label(fn: Callable[..., Any], args: tuple[Any, ...] = ()) -> str:
    if fn is call_chunk:  # the engine's chunk: name the stage function, not the wrapper
        return f"{_label(args[0])} on a chunk of {len(args[1])} inputs"
    return getattr(fn, "__qualname__", None) or repr(fn)


class ProcessExecutor(WorkerPool):
    """Run calls in persistent worker processes; numpy buffers travel through shared memory.

    Args:
        max_workers: Worker processes (default: usable cores).
        initializer: Called once in every worker process before its first call.
        initargs: Arguments for ``initializer``.
        name: Names threads, processes and errors (the engine passes the stage name).
        start_method: ``"forkserver"`` (default where available) or ``"spawn"``.
        priority, cpus: As ``WorkerPool``'s; each worker process applies them to itself at start.

    Raises:
        ValueError: ``start_method`` is ``"fork"`` or unknown (``priority``, ``cpus``: as above).
    """

    _kind = "process"

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        name: str | None = None,
        start_method: str | None = None,
        priority: str = "normal",
        cpus: Iterable[int] | None = None,
    ) -> None:
        method = start_method or default_start_method()
        if (
            method not in ("forkserver", "spawn")
            or method not in multiprocessing.get_all_start_methods()
        ):
            raise ValueError(
                f"start_method must be 'forkserver' or 'spawn' (available here: "
                f"{[m for m in multiprocessing.get_all_start_methods() if m != 'fork']}), got "
                f"{start_method!r}; 'fork' is refused because forking a process with threads "
                "can copy a lock held by another thread"
            )
        super().__init__(
            max_workers,
            initializer=initializer,
            initargs=initargs,
            name=name,
            priority=priority,
            cpus=cpus,
        )
        self._start_method = method
        start_forkserver_here(method)  # not from a worker thread a pipeline may have lowered
        self._prefix = _segments.new_prefix()

    @property
    def shm_prefix(self) -> str:
        """The name prefix of this executor's shared-memory segments under ``/dev/shm``."""
        return self._prefix

    def _make_context(self) -> WorkerContext:
        return ProcessContext(
            self._name,
            f"{self._prefix}{len(self._contexts)}-",
            self._start_method,
            *self._initializer_for(len(self._contexts)),
            self._scheduling,
        )

    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes started so far."""
        with self._state.lock:  # submit() appends contexts under it
            contexts: list[Any] = list(self._contexts)
        return [pid for pid in (c.pid for c in contexts) if pid is not None]

    def _healthy(self) -> bool:
        with self._state.lock:
            contexts: list[Any] = list(self._contexts)
        return super()._healthy() and not any(c.exited() for c in contexts)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:
            _segments.remove_segments(self._prefix)
