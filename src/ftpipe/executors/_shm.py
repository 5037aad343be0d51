"""Pickles whose large buffers travel through reusable shared-memory segments.

Each side of a connection holds an ``Endpoint``.  ``dumps`` pickles with
protocol 5: every out-of-band buffer (numpy arrays, ``PickleBuffer``) of at
least ``threshold`` bytes, and every ``bytes`` / ``bytearray`` that large
(looked for only when the pickle came out large), is copied once into a segment
the *sender owns*; the pickle only names it.  ``loads`` maps the peer's segment (once: mappings are cached) and
hands the unpickler a view, so a numpy array arrives without a second copy.

::

    sender Endpoint                     /dev/shm                         receiver Endpoint
    free segment (or a new one) <-- memcpy     <prefix><n>        --> cached mmap -> ndarray view
         ^                                                                 | last view freed
         +---- "released: <prefix><n>" rides on the next message back <----+ (weakref.finalize)

A segment is reused only after the receiver has dropped every view of it, so a
function that keeps an argument (or a consumer that keeps a result) never sees
it overwritten.  Fresh tmpfs pages cost far more than a memcpy (~8 ms vs
~0.3 ms per 8 MiB on the CI machines), which is why segments are recycled
rather than created per message.

Segments are files under ``/dev/shm`` (``_segments``): every name carries its
worker's prefix, and the owner of a connection removes every segment with that
prefix once both sides are gone (``remove_segments``).

On systems without ``/dev/shm`` everything is pickled in band.
"""

from __future__ import annotations

import io
import itertools
import mmap
import pickle
import weakref
from collections import deque
from typing import Any

from ._segments import AVAILABLE, PAGE, map_segment, unlink_segment

__all__ = ["DEFAULT_THRESHOLD", "MAX_FREE", "MIN_FREE", "Endpoint"]

DEFAULT_THRESHOLD = 64 * 1024  # below this, a pipe write is cheaper than a segment
# Free segments an owner keeps for reuse: MIN_FREE, or as many as it ever had lent at
# once (a consumer holding N results needs N), up to MAX_FREE; more are unlinked.
# Keeping them is what makes reuse work: a fresh segment costs page faults (~8 ms per
# 8 MiB here), and the memory kept never exceeds what was already in use at the peak.
MIN_FREE = 8
MAX_FREE = 32


def _copy(m: mmap.mmap, data: memoryview, offset: int = 0) -> None:
    try:
        import numpy as np
    except ImportError:
        m[offset : offset + data.nbytes] = data.cast("B")
        return
    # numpy's copy loop runs without the GIL and is twice as fast as mmap's slice
    # assignment here, so two worker threads can copy at once.
    np.frombuffer(m, dtype=np.uint8, count=data.nbytes, offset=offset)[...] = np.frombuffer(
        data, dtype=np.uint8
    )


def _drain(notices: deque[str]) -> list[str]:
    """Pop everything ``notices`` holds; appends racing this are kept for next time."""
    out = []
    while True:
        try:
            out.append(notices.popleft())
        except IndexError:
            return out


class _BytesPickler(pickle.Pickler):
    """A pickler that also moves large bytes / bytearray out of band (into ``found``)."""

    def __init__(
        self, file: io.BytesIO, threshold: int, found: list[tuple[memoryview, bool]], callback: Any
    ) -> None:
        super().__init__(file, protocol=5, buffer_callback=callback)
        self._threshold = threshold
        self._found = found

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) in (bytes, bytearray) and len(obj) >= self._threshold:
            self._found.append((memoryview(obj), False))
            return (type(obj) is bytearray, len(self._found) - 1)
        return None


class _SegmentUnpickler(pickle.Unpickler):
    """An unpickler that reads large bytes / bytearray back out of the peer's segment."""

    def __init__(self, payload: bytes, buffers: list[Any], pieces: list[memoryview]) -> None:
        super().__init__(io.BytesIO(payload), buffers=buffers)
        self._pieces = pieces

    def persistent_load(self, pid: Any) -> Any:
        is_bytearray, index = pid
        # bytes are immutable: one copy out of the segment is unavoidable.
        return (bytearray if is_bytearray else bytes)(self._pieces[index])


_ALIGN = 64  # pieces of one segment start on cache-line boundaries (numpy likes aligned data)


class Endpoint:
    """One side of a connection: owns the segments it sends, maps the ones it receives.

    ``dumps`` and ``loads`` are called by one thread at a time (the connection's
    owner); views can be freed from any thread, so release notices go through
    deques, never a lock.  A view's finalizer can run inside any bytecode of any
    thread (on free-threaded builds, when the owner merges references other
    threads dropped), including code that would be holding such a lock: taking
    one there deadlocks the thread against itself.

    Args:
        prefix: Name prefix of the segments this side creates.
        threshold: Buffers of at least this many bytes go through shared memory.
    """

    def __init__(self, prefix: str, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.prefix = prefix
        self.threshold = threshold
        self._counter = itertools.count()
        self._free: list[tuple[int, str, mmap.mmap]] = []  # segments ready for reuse
        self._lent: dict[str, tuple[int, mmap.mmap]] = {}  # the peer may still view these
        self._peak = 0  # most segments lent at once
        self._peer: dict[str, mmap.mmap] = {}  # peer segments mapped here
        # Appended from any thread, drained by the owner; deque appends and pops are atomic.
        self._released: deque[str] = deque()  # peer segments whose views died here
        self._destroyed: deque[str] = deque()  # own segments unlinked; the peer may unmap

    # -- sending ---------------------------------------------------------------------

    def dumps(self, obj: Any) -> bytes:
        """Pickle ``obj``; its large buffers are copied into one segment this side owns."""
        notices = (_drain(self._released), _drain(self._destroyed))
        if not AVAILABLE:
            return pickle.dumps((pickle.dumps(obj, protocol=5), (), notices), protocol=5)
        try:
            payload, found = self._pickle(obj)
        except BaseException:
            self._released.extendleft(reversed(notices[0]))
            self._destroyed.extendleft(reversed(notices[1]))
            raise
        used: tuple[Any, ...] = ()
        if found:
            # Every large buffer of the message goes into one segment: a chunk of
            # results costs one segment (and one mapping, one release), not one each.
            layout = []
            end = 0
            for data, oob in found:
                layout.append((end, data.nbytes, oob))
                end += -(-data.nbytes // _ALIGN) * _ALIGN
            name, m = self._lend(end)
            for (offset, _, _), (data, _) in zip(layout, found, strict=True):
                _copy(m, data, offset)
            used = (name, tuple(layout))
        return pickle.dumps((payload, used, notices), protocol=5)

    def _lend(self, size: int) -> tuple[str, mmap.mmap]:
        """A segment of at least ``size`` bytes for the peer to read: a free one, or a new one."""
        best = None
        # Best fit: the smallest free segment that holds the data.
        for i, (capacity, _, _) in enumerate(self._free):
            if capacity >= size and (best is None or capacity < self._free[best][0]):
                best = i
        if best is not None:
            capacity, name, m = self._free.pop(best)
        else:
            capacity = -(-size // PAGE) * PAGE
            name = f"{self.prefix}{next(self._counter)}"
            m = map_segment(name, capacity, create=True)
        self._lent[name] = (capacity, m)
        self._peak = max(self._peak, len(self._lent))
        return name, m

    def _pickle(self, obj: Any) -> tuple[bytes, list[tuple[memoryview, bool]]]:
        """Pickle ``obj``; return the payload and its out-of-band pieces (buffer, is it pickle-5)."""
        threshold = self.threshold
        found: list[tuple[memoryview, bool]] = []

        def buffer_callback(buf: pickle.PickleBuffer) -> bool:
            raw = buf.raw()
            if raw.nbytes < threshold:
                return True  # in band
            found.append((raw, True))
            return False

        # The plain C pickler first: a persistent_id hook costs a Python call per
        # pickled object (2-3x slower pickles of many small objects).  Only a
        # payload that came out large can hold large bytes worth moving out.
        payload = pickle.dumps(obj, protocol=5, buffer_callback=buffer_callback)
        if len(payload) < threshold:
            return payload, found
        found.clear()
        out = io.BytesIO()
        _BytesPickler(out, threshold, found, buffer_callback).dump(obj)
        return out.getvalue(), found

    def _give_back(self, name: str) -> None:
        entry = self._lent.pop(name, None)
        if entry is None:
            return
        self._free.append((entry[0], name, entry[1]))
        if len(self._free) > min(MAX_FREE, max(MIN_FREE, self._peak)):
            _, old, m = self._free.pop(0)
            m.close()
            unlink_segment(old)
            self._destroyed.append(old)

    # -- receiving -------------------------------------------------------------------

    def loads(self, message: bytes | memoryview) -> Any:
        """Rebuild an object from the peer's ``dumps``; arrays view the peer's segment."""
        payload, used, (released, destroyed) = pickle.loads(message)
        for name in released:
            self._give_back(name)
        for name in destroyed:
            self._peer.pop(name, None)  # views still alive keep their mapping
        if not used:
            return pickle.loads(payload)
        name, layout = used
        end = layout[-1][0] + layout[-1][1]
        m = self._peer.get(name)
        if m is None or len(m) < end:
            m = self._peer[name] = map_segment(name, end, create=False)
        whole = self._view(name, m, end)
        if whole is None:  # nothing can tell us when a view dies: copy, release now
            whole = memoryview(bytearray(memoryview(m)[:end]))
            self._note_release(name)
        pieces = [whole[offset : offset + nbytes] for offset, nbytes, _ in layout]
        buffers = [piece for piece, (_, _, oob) in zip(pieces, layout, strict=True) if oob]
        if all(oob for _, _, oob in layout):
            return pickle.loads(payload, buffers=buffers)
        return _SegmentUnpickler(payload, buffers, pieces).load()

    def _view(self, name: str, m: mmap.mmap, nbytes: int) -> Any:
        """A numpy view of the segment's first ``nbytes`` whose death releases it, or None."""
        try:
            import numpy as np
        except ImportError:
            return None
        view = np.frombuffer(m, dtype=np.uint8, count=nbytes)
        # Arrays rebuilt from slices of `view` keep it as their base: when the last
        # one dies, the owner may reuse the segment.
        weakref.finalize(view, self._note_release, name)
        return view

    def _note_release(self, name: str) -> None:
        self._released.append(name)

    def close(self) -> None:
        """Unmap what no view holds and unlink this side's segments."""
        for _, name, m in self._free:
            m.close()
            unlink_segment(name)
        for name in self._lent:
            unlink_segment(name)
        self._free.clear()
        self._lent.clear()
        self._peer.clear()
