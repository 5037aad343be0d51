"""The pipeline subprocess's side: run the pipelines the parent sends, one after another.

::

    parent                           reader thread (owns recv)         main thread
    b"r" + (n, config pickle, ─────► inbox ──────────────────────────► epoch n: Pipeline(config),
            checkpoints)                                                send items while credit lasts
    b"c" + (n, credits) ───────────► inbox ──────────────────────────► credits (if still epoch n);
                                                                        frees released segments
    b"s" + n  (stop epoch n) ──────► close epoch n's pipeline, wake ──► leaves `with pipeline`
    b""  (stop the child) ─────────► close the pipeline, CLOSE ───────► stops its pools, exits
               ◄──────────────────────────────────────────────────────  b"i" + item, then one of
                                                                        b"e" + error | b"d" (done)
                                                   (checkpoints: b"k" + (item, the pipeline's
                                                    state_dict() right after taking it))

Every epoch ends with exactly one b"e" or b"d", also a stopped one: the parent
reads up to it before it sends the next config, so nothing the child sends
needs an epoch number.  The reader thread exists so that a stop reaches a
main thread blocked inside the pipeline (a slow stage) without killing the
process, whose worker pools (``persistent``) then serve the next epoch.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from multiprocessing.connection import Connection
from queue import Empty, SimpleQueue
from types import FrameType

from .._engine import Pipeline
from . import _segments, _shm
from ._lifeline import die_with_parent
from ._persistent import PersistentPools
from ._remote import pack_exception

__all__ = ["pipeline_main"]

_CLOSE = b""  # put on the inbox for "stop the child"
_GONE = b"-"  # put on the inbox when the pipe to the parent broke
_WAKE = b"w"  # put on the inbox when an epoch was stopped


class _Terminated(SystemExit):
    """SIGTERM arrived: unwind ``with pipeline`` (stopping its threads and workers)."""


def _stop(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one just ends the process
    raise _Terminated(0)


class _ParentGone(Exception):
    """The pipe to the parent broke: nobody is left to take results or an error."""


class _Closing(Exception):
    """The parent asked the child to stop."""


def _send(conn: Connection, message: bytes) -> None:
    try:
        conn.send_bytes(message)
    except OSError as exc:
        raise _ParentGone from exc


class _Epochs:
    """Which epoch runs, which were stopped: shared by the reader and main threads."""

    def __init__(self) -> None:
        self.inbox: SimpleQueue[bytes] = SimpleQueue()
        self._lock = threading.Lock()  # guards the three fields below
        self._number = 0  # the epoch running now (0: none)
        self._pipeline: Pipeline | None = None
        self._stopped = 0  # every epoch up to this one was stopped by the parent

    def begin(self, number: int, pipeline: Pipeline) -> bool:
        """Record the started ``pipeline`` as epoch ``number``; False if it was stopped already."""
        with self._lock:
            if self._stopped >= number:
                return False
            self._number, self._pipeline = number, pipeline
            return True

    def end(self) -> None:
        with self._lock:
            self._number, self._pipeline = 0, None

    def stopped(self, number: int) -> bool:
        with self._lock:
            return self._stopped >= number

    def stop(self, number: int | None) -> None:
        """Stop epoch ``number`` and those before it (None: every epoch, also later ones)."""
        with self._lock:
            self._stopped = max(self._stopped, sys.maxsize if number is None else number)
            number = self._stopped
            pipeline = self._pipeline if 0 < self._number <= number else None
        self.inbox.put(_WAKE)
        if pipeline is not None:
            pipeline.close()  # wakes a main thread blocked on the pipeline's output


def _read(conn: Connection, epochs: _Epochs) -> None:
    """The reader thread: the only one that receives from the parent."""
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            epochs.inbox.put(_GONE)
            epochs.stop(None)
            return
        if not message:
            epochs.inbox.put(_CLOSE)
            epochs.stop(None)
            return
        if message[:1] == b"s":
            epochs.stop(int(message[1:]))
        else:
            epochs.inbox.put(message)


def pipeline_main(conn: Connection, prefix: str, credits: int, persistent: bool) -> None:
    """Child side: run each pipeline the parent sends, sending items while there is credit.

    Only the pipe's own errors mean the parent is gone (``_ParentGone``); any
    other exception, ``OSError`` included (a stage's ``FileNotFoundError`` or
    ``ConnectionError``), is the pipeline's error and goes to the parent after
    every item sent before it.  With ``persistent``, process and interpreter
    stages keep their pools from one pipeline to the next.
    """
    # Die with the parent even while a stage is busy.  Never armed (no
    # PR_SET_PDEATHSIG): under spawn it would follow the consumer's thread that
    # started us, which may end first.
    die_with_parent(lambda: _segments.remove_segments(prefix))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop)
    transport = _shm.Endpoint(f"{prefix}c")
    epochs = _Epochs()
    threading.Thread(
        target=_read, args=(conn, epochs), name="ftpipe-pipeline-reader", daemon=True
    ).start()
    pools = PersistentPools() if persistent else None
    try:
        try:
            while True:
                message = _take(epochs.inbox, block=True)
                if message[:1] == b"r":
                    number, blob, checkpoints = transport.loads(memoryview(message)[1:])
                    _run_epoch(conn, transport, epochs, pools, number, blob, credits, checkpoints)
                elif message[:1] == b"c":  # late credit for an epoch that ended: notices only
                    transport.loads(memoryview(message)[1:])
        finally:
            if pools is not None:
                pools.close()
            transport.close()
            # Cleaned up: a SIGTERM from here on (the parent's, while interpreter exit
            # waits for a stuck stage's thread) just ends the process.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except _Closing:
        pass
    except _ParentGone:
        _segments.remove_segments(prefix)  # nobody else will clean up
    except _Terminated:
        # A SIGTERM to the whole process group takes the parent too: clean up here.
        _segments.remove_segments(prefix)
        raise


def _take(inbox: SimpleQueue[bytes], *, block: bool) -> bytes:
    """The next message for the main thread (raises for close and a lost parent), or b"w"."""
    try:
        message = inbox.get(block=block)
    except Empty:
        return _WAKE
    if message == _CLOSE:
        raise _Closing
    if message == _GONE:
        raise _ParentGone
    return message


def _run_epoch(
    conn: Connection,
    transport: _shm.Endpoint,
    epochs: _Epochs,
    pools: PersistentPools | None,
    number: int,
    blob: bytes,
    credits: int,
    checkpoints: bool = False,
) -> None:
    """Run epoch ``number``; its end marker goes out once its pipeline is closed.

    Only then is the child ready for the next epoch: a pipeline whose close
    waits on a stuck call sends nothing, and the parent replaces the child.
    """
    where = f"in pipeline subprocess {os.getpid()}"
    end = b"d"
    try:
        config = pickle.loads(blob)
        # The child runs at the pipeline's priority (lowering only: it cannot be raised).
        config.scheduling.apply_to_process()
        if pools is not None:
            config = pools.attach(config)
        if not epochs.stopped(number):  # else stopped before it began
            pipeline = Pipeline(config)
            with pipeline:
                if epochs.begin(number, pipeline):
                    _stream(conn, transport, epochs, pipeline, number, credits, checkpoints)
    except (_ParentGone, _Terminated, _Closing):
        raise
    except BaseException as exc:
        end = b"e" + transport.dumps(pack_exception(exc, where))
    finally:
        epochs.end()
    _send(conn, end)


def _stream(
    conn: Connection,
    transport: _shm.Endpoint,
    epochs: _Epochs,
    pipeline: Pipeline,
    number: int,
    credits: int,
    checkpoints: bool,
) -> None:
    """Send the pipeline's items while there is credit, until it ends or is stopped.

    With ``checkpoints``, each item goes with the pipeline's checkpoint right after
    it was taken: the parent's ``state_dict()`` is then the one of the last item its
    consumer took, however far ahead the child runs.
    """
    for item in pipeline:
        # Read credits (or a stop) without blocking; block only when out of credit.
        while not epochs.stopped(number) and (credits == 0 or not epochs.inbox.empty()):
            message = _take(epochs.inbox, block=credits == 0)
            if message[:1] == b"c":
                # A credit message also frees segments the parent released.
                epoch, more = transport.loads(memoryview(message)[1:])
                credits += more if epoch == number else 0
        if epochs.stopped(number):
            return
        if checkpoints:
            _send(conn, b"k" + transport.dumps((item, pipeline.state_dict())))
        else:
            _send(conn, b"i" + transport.dumps(item))
        credits -= 1
        del item
