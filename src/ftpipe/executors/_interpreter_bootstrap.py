"""What runs inside each subinterpreter: a serving thread, and the frames it reads and writes.

``InterpreterContext`` starts a subinterpreter and runs ``BOOTSTRAP`` in its
``__main__``; that starts one long-lived thread of the subinterpreter's own
which serves calls from a pipe, so a call costs two pipe writes and two
wake-ups, not a thread state created and destroyed per call::

    worker thread (main interpreter)          serving thread (its subinterpreter, own GIL)
    send_frame(pickle((chunk, fn, args, kwargs)))
                               --pipe: frame--> import fn by name, call it
    receive_frame() -> result / exception
                               <--pipe: frame-- pickle((ok, value, traceback text))

A frame is an 8-byte length and a pickle; an empty frame asks the serving
thread to stop, and its end of file tells the worker thread it is gone.  The
engine's chunks (``call_chunk``: many inputs per call) of plain functions
(``INLINE_KINDS``) run in a loop written in the bootstrap itself, so a
subinterpreter imports only what the user's function needs, never ftpipe; that
is also why the bootstrap carries its own copy of the framing and of
``_remote.pack_exception``.
"""

from __future__ import annotations

import os

__all__ = ["BOOTSTRAP", "INLINE_KINDS", "receive_frame", "send_frame"]

# Runs once in each new subinterpreter's __main__ (with _ftpipe_path and
# _ftpipe_fds set) and starts its serving thread.  Kept free of ftpipe imports.
BOOTSTRAP = """
import os, pickle, sys, threading, time, traceback
sys.path[:] = pickle.loads(_ftpipe_path)
del _ftpipe_path

def _ftpipe_pack(exc):
    text = "[in subinterpreter]\\n" + "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc, 5))
    except Exception:
        exc = RuntimeError(f"{type(exc).__qualname__}: {exc} (the original exception could not be pickled)")
    return (exc, text)

def _ftpipe_chunk(fn, items, kind, ctx=None):
    # The engine's call_chunk for plain and star calls, failures packed.  A stage's
    # chunk carries its context (ctx); ftpipe is imported here already then (it
    # unpickled call_chunk), and its _context module tells the calls where they run.
    t0 = time.perf_counter()
    results, failures = [], {}
    star = kind == "star"
    context = None if ctx is None else sys.modules.get("ftpipe._engine._context")
    previous = None if context is None else context.enter_chunk(ctx)
    try:
        if context is not None:
            items = context.positioned(items, ctx.seq0, ctx.key)
        for i, item in enumerate(items):
            try:
                results.append(fn(*item) if star else fn(item))
            except BaseException as exc:
                failures[i] = _ftpipe_pack(exc)
                results.append(None)
    finally:
        if context is not None:
            context.leave_chunk(previous)
    return (results, failures, time.perf_counter() - t0)

def _ftpipe_portable(out):
    # The whole outcome did not pickle: fail only the inputs whose results do not.
    results, failures, seconds = out[1]
    results = list(results)
    for i, result in enumerate(results):
        if i not in failures:
            try:
                pickle.dumps(result, 5)
            except Exception as exc:
                failures[i] = _ftpipe_pack(TypeError(
                    f"the result ({type(result).__name__}) cannot be pickled back to the main interpreter: {exc}"
                ))
                results[i] = None
    return (True, (results, failures, seconds), "")

def _ftpipe_serve(rfd, wfd):
    def receive():
        buf, need = bytearray(), 8
        while len(buf) < need:
            more = os.read(rfd, max(need - len(buf), 65536))
            if not more:
                return None
            buf += more
            if need == 8 and len(buf) >= 8:
                need = 8 + int.from_bytes(buf[:8], "little")
        return memoryview(buf)[8:need] if need > 8 else None

    def send(data):
        view = memoryview(len(data).to_bytes(8, "little") + data)
        while view:
            view = view[os.write(wfd, view):]

    try:
        while True:
            task = receive()
            if task is None:
                break
            chunk = False
            try:
                chunk, fn, args, kwargs = pickle.loads(task)
                task = None
                if chunk:
                    out = (True, _ftpipe_chunk(*args), "")
                else:
                    out = (True, fn(*args, **kwargs), "")
            except BaseException as exc:
                out = (False, *_ftpipe_pack(exc))
            fn = args = kwargs = None
            try:
                data = pickle.dumps(out, 5)
            except BaseException as exc:
                if chunk and out[0]:
                    data = pickle.dumps(_ftpipe_portable(out), 5)
                else:
                    data = pickle.dumps((False, *_ftpipe_pack(TypeError(
                        f"the result ({type(out[1]).__name__}) cannot be pickled back to the main interpreter: {exc}"
                    ))), 5)
            out = None
            send(data)
            data = None
    finally:
        os.close(wfd)  # the main interpreter reads EOF: this worker is gone
        os.close(rfd)

threading.Thread(target=_ftpipe_serve, args=pickle.loads(_ftpipe_fds), name="ftpipe-serve").start()
del _ftpipe_fds
"""

# call_chunk kinds the bootstrap runs itself; others import ftpipe in the worker.
INLINE_KINDS = ("function", "star")


def send_frame(fd: int, data: bytes) -> None:
    """Write one frame (an empty ``data`` asks the serving thread to stop)."""
    view = memoryview(len(data).to_bytes(8, "little") + data)
    while view:
        view = view[os.write(fd, view) :]


def receive_frame(fd: int) -> memoryview | None:
    """Read one frame; None at end of file (the serving thread is gone)."""
    buf, need = bytearray(), 8
    while len(buf) < need:
        more = os.read(fd, max(need - len(buf), 65536))
        if not more:
            return None
        buf += more
        if need == 8 and len(buf) >= 8:
            need = 8 + int.from_bytes(buf[:8], "little")
    return memoryview(buf)[8:need]
