"""Whole pipelines in one dedicated child process: ``run_in_subprocess`` and ``PipelineChild``.

The answer to the noisy neighbour: the pipeline's threads compete for cores
with each other in the child, not with the training loop's thread here::

    parent (consumer)                                child process (_subprocess_child)
    PipelineChild.run(config) --- b"r" + config ---> epoch n: Pipeline(config), started
    SubprocessEpoch.__next__ <--- b"i" + Endpoint pickle (arrays in /dev/shm)
                             <--- b"e" + (exception, traceback) | b"d" (done)
    every buffer_size // 2 items - b"c" + n more credits + released segments ->  sends only with credit
    SubprocessEpoch.close()  ---- b"s" + n ------> stops epoch n; the child (and its pools) stay
    next run(): reads what epoch n still sent, up to its b"e" | b"d"; a child that does not
                get there within SETTLE_S, or died, is replaced by a new one
    PipelineChild.close()  ------ b"" (stop) ----> leaves `with pipeline`, stops its pools;
                                                   reaped; segments removed

Credits bound how far the child runs ahead (``buffer_size`` items), so a fast
pipeline cannot fill ``/dev/shm`` while the consumer is busy.
``run_in_subprocess`` (``_run_in_subprocess``) is one ``run`` on a child of its own,
closed with it.
"""

from __future__ import annotations

import multiprocessing
import weakref
from multiprocessing.connection import Connection
from time import monotonic
from typing import Any

from .._engine import check_resumable, resume, state_of
from .._validate import positive_int
from . import _segments, _shm
from ._callables import pickle_config
from ._children import new_process
from ._context import BrokenWorkerError
from ._persistent import SETTLE_S
from ._process import default_start_method, describe_exit, reap
from ._remote import unpack_exception
from ._subprocess_child import pipeline_main

__all__ = ["PipelineChild", "SubprocessEpoch"]


class PipelineChild:
    """A pipeline subprocess that stays: it runs one pipeline after another until ``close()``.

    Each ``run`` sends a pipeline to the same child process and returns its
    results; process and interpreter stages keep their worker pools from one
    run to the next (``keep_pools``), so an epoch after the first starts no
    process at all.  A ``run`` first ends what is left of the previous one:
    the child stops that pipeline and stays, unless it cannot within
    ``SETTLE_S`` (a call stuck in a thread stage) or died: then a new child
    starts.  Not thread-safe: one consumer (``close`` may come from anywhere).

    Args:
        buffer_size: Results the child may run ahead of the consumer.
        start_method: ``"forkserver"`` (default where available) or ``"spawn"``.
        keep_pools: Keep stage worker pools between runs (False: each pipeline
            starts and stops its own, as ``run_in_subprocess`` does).

    Raises:
        TypeError: ``buffer_size`` is not an int.
        ValueError: ``buffer_size`` is below 1, or ``start_method`` is unknown.
    """

    def __init__(
        self, *, buffer_size: int = 16, start_method: str | None = None, keep_pools: bool = True
    ) -> None:
        positive_int(buffer_size, "buffer_size")
        if start_method not in (None, "forkserver", "spawn"):
            raise ValueError(f"start_method must be 'forkserver' or 'spawn', got {start_method!r}")
        self._ctx = multiprocessing.get_context(start_method or default_start_method())
        self._buffer_size = buffer_size
        self._keep_pools = bool(keep_pools)
        self._refill = max(1, buffer_size // 2)
        self._proc: Any = None
        self._pid: int | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._closed = False
        self._number = 0  # the last epoch sent
        self._open: int | None = None  # the epoch whose end (b"e" / b"d") is still to be read
        self._owed = 0

    @property
    def pid(self) -> int | None:
        """The process id of the child (the last one, once closed); None before the first run."""
        return self._pid

    @property
    def shm_prefix(self) -> str | None:
        """The name prefix of the child's and this side's segments under ``/dev/shm``."""
        return None if self._proc is None else self._endpoint.prefix[:-1]

    def run(
        self, builder: Any, state: dict[str, Any] | None = None, checkpoints: bool = False
    ) -> SubprocessEpoch:
        """Run a pipeline (a ``PipelineBuilder`` or its ``config()``) in the child.

        Args:
            builder: The pipeline.
            state: A checkpoint (``state_dict()``) to resume from, as ``build(state=)``.
            checkpoints: Send each item with the checkpoint after it (about 10 µs
                of the child's time per item), so that ``state_dict()`` works.

        Returns:
            Its results: an iterator that is also a context manager; with
            ``checkpoints``, its ``state_dict()`` is the checkpoint after the last
            item taken from it.

        Raises:
            TypeError: The source, a stage function or a stage executor cannot
                move to a child process (the message names which).
            ValueError: ``state`` does not fit the pipeline.
            RuntimeError: ``close()`` was called.
        """
        config = builder.config() if hasattr(builder, "config") else builder
        if state is not None:
            config = resume(config, state)
        # The checkpoint before the first item, or why state_dict() has none.
        first: dict[str, Any] | None = None
        why_not = (
            "state_dict(): this pipeline runs without checkpoints; "
            "pass checkpoints=True to run_in_subprocess (or PipelineChild.run)"
        )
        if checkpoints:
            try:
                check_resumable(config, "state_dict()")
            except ValueError as refused:
                why_not = str(refused)
            else:
                first = state_of(config, 0, None, None)
        checkpoints = first is not None
        blob = pickle_config(config)
        if self._closed:
            raise RuntimeError("this pipeline subprocess was closed; start a new PipelineChild")
        self._end_epoch()
        for attempt in (1, 2):
            if self._proc is None or not self._proc.is_alive():
                self._kill()  # died while idle (or never started): its segments go with it
                self._spawn()
            self._number += 1
            try:
                message = (self._number, blob, checkpoints)
                self._conn.send_bytes(b"r" + self._endpoint.dumps(message))
                break
            except OSError:
                if attempt == 2:
                    raise
        self._open, self._owed = self._number, 0
        return SubprocessEpoch(self, self._number, first, why_not)

    def close(self) -> None:
        """Stop the child (and its pools), reap it and unlink its shared memory (idempotent)."""
        self._closed = True
        self._open = None
        self._kill()

    def __enter__(self) -> PipelineChild:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _spawn(self) -> None:
        prefix = _segments.new_prefix()
        self._conn, child_end = self._ctx.Pipe(duplex=True)
        self._proc = new_process(
            self._ctx,
            target=pipeline_main,
            args=(child_end, prefix, self._buffer_size, self._keep_pools),
            name="ftpipe:pipeline",
        )
        self._proc.start()
        self._pid = self._proc.pid
        child_end.close()  # so the child's death reads as EOF here
        self._endpoint = _shm.Endpoint(f"{prefix}p")
        self._finalizer = weakref.finalize(self, _close, self._conn, self._proc, prefix)

    def _kill(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._proc = self._finalizer = None

    def _end_epoch(self) -> None:
        """Stop the open epoch and read the rest of it, so the next one starts clean."""
        if self._open is None:
            return
        number, self._open = self._open, None
        deadline = monotonic() + SETTLE_S
        try:
            self._conn.send_bytes(b"s%d" % number)
            while True:
                left = deadline - monotonic()
                if left <= 0 or not self._conn.poll(left):
                    raise TimeoutError
                message = self._conn.recv_bytes()
                if message[:1] in (b"i", b"e"):
                    try:  # mapped and dropped: the child may reuse the segment
                        self._endpoint.loads(memoryview(message)[1:])
                    except Exception:  # noqa: BLE001 - nobody wants this result any more
                        pass
                if message[:1] in (b"e", b"d"):
                    return
        except (OSError, EOFError, TimeoutError):
            self._kill()  # stuck or dead: the next run starts a new child

    def _stop_epoch(self, number: int) -> None:
        if self._open == number:
            try:
                self._conn.send_bytes(b"s%d" % number)  # stop producing now; read at the next run
            except OSError:
                pass

    def _next(self, number: int) -> Any:
        if self._open != number:
            raise StopIteration  # ended, or a later run took over
        try:
            message = self._conn.recv_bytes()
        except (EOFError, OSError):
            self._open = None
            code = reap(self._proc)
            self._kill()
            raise BrokenWorkerError(
                f"pipeline subprocess {self._pid} {describe_exit(code)} before the pipeline finished",
                name="pipeline",
                exitcode=code,
            ) from None
        tag, body = message[:1], memoryview(message)[1:]
        if tag in (b"i", b"k"):
            self._owed += 1
            if self._owed >= self._refill:
                # Credits carry release notices: segments whose arrays died here.
                try:
                    self._conn.send_bytes(b"c" + self._endpoint.dumps((number, self._owed)))
                except OSError:
                    pass  # the child is gone; its last messages (or EOF) come next
                self._owed = 0
            return self._endpoint.loads(body)  # b"k": (item, checkpoint)
        self._open = None
        if tag == b"e":
            exc, tb = self._endpoint.loads(body)
            raise unpack_exception(exc, tb, "subprocess", "pipeline")
        raise StopIteration


class SubprocessEpoch:
    """The results of one ``PipelineChild.run``: an iterator that is also a context manager.

    ``close()`` (or leaving the ``with`` block) stops this pipeline in the
    child; the child stays for the next run.
    """

    def __init__(
        self, child: PipelineChild, number: int, first: dict[str, Any] | None, why_not: str
    ) -> None:
        """``first``: the checkpoint before the first item, None without checkpoints
        (then ``why_not`` is ``state_dict()``'s error message)."""
        self._child = child
        self._number = number
        self._pid = child.pid
        self._done = False
        self._checkpoint = first  # after the last item taken: each item comes with one
        self._why_not = why_not

    @property
    def pid(self) -> int | None:
        """The process id of the child that runs this pipeline."""
        return self._pid

    def __iter__(self) -> SubprocessEpoch:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            got = self._child._next(self._number)
        except BaseException:
            self._done = True
            raise
        if self._checkpoint is not None:
            got, self._checkpoint = got
        return got

    def state_dict(self) -> dict[str, Any]:
        """The pipeline's checkpoint after the last item taken (``Pipeline.state_dict()``).

        Raises:
            ValueError: The pipeline cannot be checkpointed (the message says why).
        """
        if self._checkpoint is None:
            raise ValueError(self._why_not)
        return self._checkpoint

    def close(self) -> None:
        """Stop this pipeline (the child stays; the next run reads what it still sent)."""
        if not self._done:
            self._done = True
            self._child._stop_epoch(self._number)

    def __enter__(self) -> SubprocessEpoch:
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
