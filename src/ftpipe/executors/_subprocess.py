"""``run_in_subprocess``: a whole pipeline in one dedicated child process.

The answer to the noisy neighbour: the pipeline's threads compete for cores
with each other in the child, not with the training loop's thread here::

    parent (consumer)                               child process
    SubprocessPipeline.__next__ <--- pipe: b"i" + Endpoint pickle (arrays in /dev/shm)
                                <--- b"e" + (exception, traceback) | b"d" (done)
    every buffer_size // 2 items --- n more credits + released segments --->  sends only with credit
    close() / break / __exit__  --- b"" (stop) ---> leaves `with pipeline`; reaped; segments removed

Credits bound how far the child runs ahead (``buffer_size`` items), so a fast
pipeline cannot fill ``/dev/shm`` while the consumer is busy.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import signal
import weakref
from collections.abc import Iterable
from concurrent.futures import Executor
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from .._priority import Scheduling
from .._validate import positive_int
from . import _segments, _shm
from ._callables import check_picklable
from ._context import BrokenWorkerError
from ._lifeline import die_with_parent
from ._process import default_start_method, describe_exit, reap
from ._remote import pack_exception, unpack_exception

__all__ = ["SubprocessPipeline", "run_in_subprocess"]


class _Terminated(SystemExit):
    """SIGTERM arrived: unwind ``with pipeline`` (stopping its threads and workers)."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(0)


class _ParentGone(Exception):
    """The pipe to the parent broke: nobody is left to take results or an error."""


def _recv(conn: Connection) -> bytes:
    try:
        return conn.recv_bytes()
    except (EOFError, OSError) as exc:
        raise _ParentGone from exc


def _send(conn: Connection, message: bytes) -> None:
    try:
        conn.send_bytes(message)
    except OSError as exc:
        raise _ParentGone from exc


def _readable(conn: Connection) -> bool:
    try:
        return conn.poll()
    except OSError as exc:
        raise _ParentGone from exc


def pipeline_main(conn: Connection, prefix: str, blob: bytes, credits: int) -> None:
    """Child side: run the pipeline, send items while there is credit.

    Only the pipe's own errors mean the parent is gone (``_ParentGone``); any
    other exception, ``OSError`` included (a stage's ``FileNotFoundError`` or
    ``ConnectionError``), is the pipeline's error and goes to the parent after
    every item sent before it.
    """
    # Die with the parent even while a stage is busy.  Never armed (no
    # PR_SET_PDEATHSIG): under spawn it would follow the consumer's thread that
    # started us, which may end first.
    die_with_parent(lambda: _segments.remove_segments(prefix))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)
    transport = _shm.Endpoint(f"{prefix}c")
    where = f"in pipeline subprocess {os.getpid()}"
    try:
        try:
            from .._engine._pipeline import Pipeline

            config = pickle.loads(blob)
            # The whole child runs at the pipeline's priority, from its first thread.
            config.scheduling.apply_to_process()
            pipeline = Pipeline(config)
            with pipeline:
                for item in pipeline:
                    # Read credits (or a stop) without blocking; block only when out of credit.
                    while credits == 0 or _readable(conn):
                        message = _recv(conn)
                        if not message:
                            transport.close()
                            return
                        # A credit message also frees segments the parent released.
                        credits += transport.loads(message)
                    _send(conn, b"i" + transport.dumps(item))
                    credits -= 1
                    del item
        except (_ParentGone, _Terminated):
            raise
        except BaseException as exc:
            _send(conn, b"e" + transport.dumps(pack_exception(exc, where)))
            return
        _send(conn, b"d")
    except _ParentGone:
        _segments.remove_segments(prefix)  # nobody else will clean up
    except _Terminated:
        # A SIGTERM to the whole process group takes the parent too: clean up here.
        _segments.remove_segments(prefix)
        raise


class SubprocessPipeline:
    """Iterator over the results of a pipeline running in a child process.

    Use it as a context manager (or call ``close()``): leaving early stops the
    child, reaps it and removes its shared memory.  Not thread-safe: one consumer.
    """

    def __init__(self, config: Any, *, buffer_size: int, start_method: str | None) -> None:
        blob = _pickle_config(config)
        ctx = multiprocessing.get_context(start_method or default_start_method())
        self._prefix = _segments.new_prefix()
        self._conn, child_end = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(  # type: ignore[attr-defined]
            target=pipeline_main,
            args=(child_end, self._prefix, blob, buffer_size),
            name="ftpipe:pipeline",
        )
        self._proc.start()
        self._pid: int = self._proc.pid
        child_end.close()  # so the child's death reads as EOF here
        self._endpoint = _shm.Endpoint(f"{self._prefix}p")
        self._refill = max(1, buffer_size // 2)
        self._owed = 0
        self._done = False
        self._finalizer = weakref.finalize(self, _close, self._conn, self._proc, self._prefix)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._pid

    def __iter__(self) -> SubprocessPipeline:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            message = self._conn.recv_bytes()
        except (EOFError, OSError):
            code = reap(self._proc)
            self.close()
            raise BrokenWorkerError(
                f"pipeline subprocess {self._pid} {describe_exit(code)} before the pipeline finished",
                name="pipeline",
                exitcode=code,
            ) from None
        tag, body = message[:1], memoryview(message)[1:]
        if tag == b"i":
            self._owed += 1
            if self._owed >= self._refill:
                # Credits carry release notices: segments whose arrays died here.
                try:
                    self._conn.send_bytes(self._endpoint.dumps(self._owed))
                except OSError:
                    pass  # the child is gone; its last messages (or EOF) come next
                self._owed = 0
            return self._endpoint.loads(body)
        if tag == b"e":
            # Read the exception before close() unlinks the child's segments: its
            # arguments may travel through them (a numpy array in the message).
            try:
                exc, tb = self._endpoint.loads(body)
            finally:
                self.close()
            raise unpack_exception(exc, tb, "subprocess", "pipeline")
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Stop the child (if still running), reap it and unlink its shared memory."""
        self._done = True
        self._finalizer()

    def __enter__(self) -> SubprocessPipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _close(conn: Connection, proc: Any, prefix: str) -> None:
    if proc.exitcode is None:
        try:
            conn.send_bytes(b"")  # stop
        except OSError:
            pass
        # A child blocked inside a slow stage only reads the stop after its next
        # item: SIGTERM unwinds its `with pipeline` at once.
        proc.join(0.5)
        if proc.exitcode is None:
            proc.terminate()
    reap(proc, timeout=1.0)  # then SIGKILL: close() must not wait on a stuck stage
    conn.close()
    _segments.remove_segments(prefix)
    # Segments of the child's own executors carry the child's pid (see _segments.new_prefix).
    _segments.remove_segments(f"ftpipe-{proc.pid}-")
    proc.close()


def _pickle_config(config: Any) -> bytes:
    for stage in config.stages:
        if isinstance(stage.executor, Executor):
            raise TypeError(
                f"stage {stage.name!r}: a user-supplied executor ({type(stage.executor).__name__}) "
                "cannot move into the pipeline subprocess; pass a kind name instead "
                "('thread', 'process', 'interpreter')"
            )
        if stage.fn is not None:
            check_picklable(stage.fn, stage.name, target="the pipeline subprocess")
    try:
        pickle.dumps(config.source, protocol=5)
    except Exception as exc:
        raise TypeError(
            f"the source ({type(config.source).__name__}) cannot be sent to the pipeline "
            f"subprocess: {type(exc).__name__}: {exc}. Pass a list, a range or an iterable "
            "object whose class is importable (generators cannot be pickled)"
        ) from exc
    return pickle.dumps(config, protocol=5)


def run_in_subprocess(
    builder: Any,
    *,
    buffer_size: int = 16,
    start_method: str | None = None,
    priority: str | None = None,
    cpus: Iterable[int] | None = None,
) -> SubprocessPipeline:
    """Run a whole pipeline in one dedicated child process and stream its results back.

    The pipeline runs there with its own threads (and executors), so its CPU
    work no longer competes with this process's threads for the GIL or for the
    scheduler's attention; numpy arrays in results come back through shared
    memory without a copy.

    Args:
        builder: A ``PipelineBuilder`` (or its ``config()``): the source must be
            picklable and stage functions importable.
        buffer_size: Results the child may run ahead of the consumer.
        start_method: ``"forkserver"`` (default where available) or ``"spawn"``.
        priority: The child's scheduling priority, all its threads and processes
            included: ``"normal"``, ``"background"`` or ``"idle"``; None: the
            builder's (``PipelineBuilder(priority=...)``).  The child lowers
            itself as it starts, on any POSIX system (per-thread lowering needs
            Linux; a whole process does not).
        cpus: Pin the child to these CPU ids; None: the builder's.

    Returns:
        An iterator of results that is also a context manager.

    Raises:
        TypeError: The source, a stage function or a stage executor cannot move
            to a child process (the message names which), or ``buffer_size`` is
            not an int.
        ValueError: ``buffer_size`` is below 1, ``start_method`` or ``priority`` is
            unknown, or ``cpus`` names a CPU this process may not use.
    """
    positive_int(buffer_size, "buffer_size")
    if start_method not in (None, "forkserver", "spawn"):
        raise ValueError(f"start_method must be 'forkserver' or 'spawn', got {start_method!r}")
    config = builder.config() if hasattr(builder, "config") else builder
    if priority is not None or cpus is not None:
        own = config.scheduling
        scheduling = Scheduling.of(
            own.priority if priority is None else priority,
            own.cpus if cpus is None else cpus,
            "run_in_subprocess",
        )
        config = dataclasses.replace(config, scheduling=scheduling)
    return SubprocessPipeline(config, buffer_size=buffer_size, start_method=start_method)
