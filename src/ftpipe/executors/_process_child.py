"""The loop a ``ProcessExecutor`` worker process runs: receive a call, run it, reply.

::

    parent: worker thread i                         this process: worker_main()
    Process.start() -------------------------------> die_with_parent(); SIGINT ignored;
                                                     SIGTERM removes this worker's segments
                    <--- hello: (True, None, "") | the initializer's (False, exception, traceback)
    Endpoint.dumps((fn, args, kwargs)) ---pipe----> loads; lifeline.arm(); fn(*args, **kwargs);
                                                     disarm()
                    <--- reply: (ok, value | exception, traceback text); a chunk's failures are
                         packed per input; a result that does not pickle fails its own call
    b"" (stop) ------------------------------------> close the transport, return
    parent gone (EOF, or the lifeline) ------------> remove this worker's segments, exit
"""

from __future__ import annotations

import os
import pickle
import signal
from multiprocessing.connection import Connection
from typing import Any

from .._engine._calls import call_chunk, pack_failures
from .._priority import NORMAL, Scheduling
from ._lifeline import die_with_parent
from ._remote import pack_exception, portable_chunk
from ._segments import remove_segments, remove_segments_on_sigterm
from ._shm import Endpoint

__all__ = ["worker_main"]


def _reply(transport: Endpoint, out: tuple[Any, ...], where: str, chunk: bool = False) -> bytes:
    try:
        return transport.dumps(out)
    except BaseException as exc:  # an unpicklable result becomes that call's error
        if chunk and out[0]:
            # Only the inputs whose results do not pickle fail; the rest travel.
            return transport.dumps((True, portable_chunk(out[1], where), ""))
        err = TypeError(
            f"the result ({type(out[1]).__name__}) cannot be pickled back to the parent: {exc}"
        )
        return transport.dumps((False, *pack_exception(err, where)))


def worker_main(
    conn: Connection, prefix: str, init_blob: bytes, scheduling: Scheduling = NORMAL
) -> None:
    """Serve calls from ``conn`` until it closes or an empty message arrives.

    Args:
        conn: This worker's end of its duplex pipe to the parent thread.
        prefix: Shared-memory name prefix of this worker (the parent removes its segments).
        init_blob: ``pickle((initializer, initargs))``; initializer may be None.
        scheduling: The executor's priority and CPU set, applied first: a
            forkserver child inherits the forkserver's, not its parent thread's.
    """
    scheduling.apply_to_process()
    # Die with the parent, even mid-call.  Arming PR_SET_PDEATHSIG around calls is
    # safe here: the thread that started this process, a pool worker thread,
    # outlives it.
    lifeline = die_with_parent(lambda: remove_segments(prefix))
    # Ctrl-C goes to the whole process group: let the parent decide how to stop us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    remove_segments_on_sigterm(prefix)
    where = f"in worker process {os.getpid()}"
    transport = Endpoint(f"{prefix}c")
    try:
        initializer, initargs = pickle.loads(init_blob)
        if initializer is not None:
            lifeline.arm()
            try:
                initializer(*initargs)
            finally:
                lifeline.disarm()
        hello: tuple[Any, ...] = (True, None, "")
    except BaseException as exc:
        hello = (False, *pack_exception(exc, where))
    conn.send_bytes(_reply(transport, hello, where))
    if not hello[0]:
        return
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):  # the parent is gone: nobody else will clean up
            remove_segments(prefix)
            return
        if not message:
            transport.close()
            return
        chunk = False
        try:
            fn, args, kwargs = transport.loads(message)
            del message
            chunk = fn is call_chunk
            lifeline.arm()
            try:
                value = fn(*args, **kwargs)
            finally:
                lifeline.disarm()
            if chunk:
                value = pack_failures(value, lambda e: pack_exception(e, where))
            out: tuple[Any, ...] = (True, value, "")
        except BaseException as exc:
            out = (False, *pack_exception(exc, where))
        # Drop our references to the arguments first, so their mappings close now.
        fn = args = kwargs = value = None
        reply = _reply(transport, out, where, chunk)
        del out
        try:
            conn.send_bytes(reply)
        except (EOFError, OSError):
            remove_segments(prefix)
            return
