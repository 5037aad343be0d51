"""The loop a ``ProcessExecutor`` worker process runs: receive a call, run it, reply."""

from __future__ import annotations

import os
import pickle
import signal
from multiprocessing.connection import Connection
from typing import Any

from ._remote import pack_exception
from ._shm import Endpoint, sweep, sweep_on_sigterm

__all__ = ["worker_main"]


def _reply(transport: Endpoint, out: tuple[Any, ...], where: str) -> bytes:
    try:
        return transport.dumps(out)
    except BaseException as exc:  # an unpicklable result becomes that call's error
        err = TypeError(
            f"the result ({type(out[1]).__name__}) cannot be pickled back to the parent: {exc}"
        )
        return transport.dumps((False, *pack_exception(err, where)))


def worker_main(conn: Connection, prefix: str, init_blob: bytes) -> None:
    """Serve calls from ``conn`` until it closes or an empty message arrives.

    Args:
        conn: This worker's end of its duplex pipe to the parent thread.
        prefix: Shared-memory name prefix of this worker (the parent sweeps it).
        init_blob: ``pickle((initializer, initargs))``; initializer may be None.
    """
    # Ctrl-C goes to the whole process group: let the parent decide how to stop us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sweep_on_sigterm(prefix)
    where = f"in worker process {os.getpid()}"
    transport = Endpoint(f"{prefix}c")
    try:
        initializer, initargs = pickle.loads(init_blob)
        if initializer is not None:
            initializer(*initargs)
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
            sweep(prefix)
            return
        if not message:
            transport.close()
            return
        try:
            fn, args, kwargs = transport.loads(message)
            del message
            out: tuple[Any, ...] = (True, fn(*args, **kwargs), "")
        except BaseException as exc:
            out = (False, *pack_exception(exc, where))
        # Drop our references to the arguments first, so their mappings close now.
        fn = args = kwargs = None
        reply = _reply(transport, out, where)
        del out
        try:
            conn.send_bytes(reply)
        except (EOFError, OSError):
            sweep(prefix)
            return
