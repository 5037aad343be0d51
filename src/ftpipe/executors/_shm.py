"""Pickles whose large buffers travel through shared memory instead of a pipe.

``dumps`` pickles with protocol 5: every out-of-band buffer (numpy arrays,
``pickle.PickleBuffer``) of at least ``threshold`` bytes, and large ``bytes`` /
``bytearray`` objects near the top of the payload, is copied once into a fresh
POSIX shared-memory file; the pickle itself only names the files.  ``loads``
maps each file, unlinks its name at once, and hands the mapping to the
unpickler, so a numpy array comes back as a view of the mapping: no second
copy, and no name left in ``/dev/shm`` once the receiver has attached.

::

    sender                         /dev/shm                        receiver
    pickle(obj, buffer_callback) --> ftpipe-<pid>-<token>-<n>  --> mmap, unlink name
         (one memcpy per buffer)       (lives between the two)     np.ndarray views the mmap

Why files under ``/dev/shm`` and not ``multiprocessing.shared_memory``: the
receiver unlinks right after mapping, so nothing needs the resource tracker
(which warns about, and on 3.11/3.12 even unlinks, segments it did not create).
Segments exist only between a send and the matching receive; a worker that
dies in between leaves names with its executor's prefix, which ``sweep``
removes when the executor breaks or shuts down.

On systems without ``/dev/shm`` everything is pickled in band.
"""

from __future__ import annotations

import io
import itertools
import mmap
import os
import pickle
import secrets
from typing import Any

__all__ = ["DEFAULT_THRESHOLD", "Transport", "new_prefix", "sweep"]

SHM_DIR = "/dev/shm"
DEFAULT_THRESHOLD = 64 * 1024  # below this, a pipe write is cheaper than a new mapping
_AVAILABLE = os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)
# MAP_POPULATE pre-faults the pages in one kernel call instead of one fault per page.
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def new_prefix() -> str:
    """Return a name prefix unique to one executor in this process."""
    return f"ftpipe-{os.getpid()}-{secrets.token_hex(4)}-"


def sweep(prefix: str) -> int:
    """Unlink every segment whose name starts with ``prefix``; return how many."""
    if not _AVAILABLE:
        return 0
    removed = 0
    for entry in os.listdir(SHM_DIR):
        if entry.startswith(prefix):
            try:
                os.unlink(os.path.join(SHM_DIR, entry))
                removed += 1
            except FileNotFoundError:  # the receiver unlinked it first
                pass
    return removed


def _write_segment(name: str, data: memoryview) -> None:
    fd = os.open(os.path.join(SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, data.nbytes)
        with mmap.mmap(fd, data.nbytes, flags=mmap.MAP_SHARED | _POPULATE) as m:
            m[:] = data
    except BaseException:
        os.unlink(os.path.join(SHM_DIR, name))
        raise
    finally:
        os.close(fd)


def _attach_segment(name: str, nbytes: int) -> mmap.mmap:
    path = os.path.join(SHM_DIR, name)
    fd = os.open(path, os.O_RDWR)
    try:
        # The mapping outlives the name: unlinking now means no later failure can leak it.
        os.unlink(path)
        return mmap.mmap(fd, nbytes, flags=mmap.MAP_SHARED | _POPULATE)
    finally:
        os.close(fd)


def _has_large_bytes(obj: Any, threshold: int, depth: int = 3) -> bool:
    """Look for big bytes/bytearray in the first levels of tuples, lists and dicts.

    A full ``persistent_id`` pass costs a Python call per pickled object (2-3x
    slower pickles of many small objects), so it is used only when this cheap
    scan finds something worth moving.
    """
    if isinstance(obj, bytes | bytearray):
        return len(obj) >= threshold
    if depth == 0:
        return False
    if isinstance(obj, dict):
        obj = obj.values()
    elif not isinstance(obj, tuple | list):
        return False
    return any(_has_large_bytes(x, threshold, depth - 1) for x in itertools.islice(obj, 64))


class Transport:
    """Pickle and unpickle through shared memory, naming segments with one prefix.

    Args:
        prefix: Segment name prefix (see ``new_prefix``); ``sweep(prefix)``
            removes whatever a dead peer left behind.
        threshold: Buffers of at least this many bytes go through shared memory.
    """

    def __init__(self, prefix: str, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.prefix = prefix
        self.threshold = threshold
        # next() on itertools.count is atomic on every build (it holds the
        # object's lock on 3.13t), so threads sending at once get distinct names.
        self._counter = itertools.count()

    def dumps(self, obj: Any) -> bytes:
        """Pickle ``obj``; large buffers are written to new shared-memory segments."""
        if not _AVAILABLE:
            return pickle.dumps((pickle.dumps(obj, protocol=5), ()), protocol=5)
        segments: list[tuple[str, int, bool]] = []
        try:
            payload = self._pickle(obj, segments)
        except BaseException:
            for name, _, _ in segments:  # half-written message: nobody will attach these
                _unlink_quietly(name)
            raise
        return pickle.dumps((payload, tuple(segments)), protocol=5)

    def _pickle(self, obj: Any, segments: list[tuple[str, int, bool]]) -> bytes:
        def to_segment(data: memoryview, oob: bool) -> str:
            name = f"{self.prefix}{next(self._counter)}"
            _write_segment(name, data)
            segments.append((name, data.nbytes, oob))
            return name

        def buffer_callback(buf: pickle.PickleBuffer) -> bool:
            raw = buf.raw()
            if raw.nbytes < self.threshold:
                return True  # in band
            to_segment(raw, True)
            return False

        out = io.BytesIO()
        pickler = pickle.Pickler(out, protocol=5, buffer_callback=buffer_callback)
        if _has_large_bytes(obj, self.threshold):
            threshold = self.threshold

            def persistent_id(o: Any) -> Any:
                if type(o) in (bytes, bytearray) and len(o) >= threshold:
                    return (type(o) is bytearray, to_segment(memoryview(o), False))
                return None

            pickler.persistent_id = persistent_id  # type: ignore[method-assign]
        pickler.dump(obj)
        return out.getvalue()

    @staticmethod
    def loads(message: bytes) -> Any:
        """Rebuild an object from ``dumps`` output; arrays view the shared mappings."""
        payload, segments = pickle.loads(message)
        if not segments:
            return pickle.loads(payload)
        mapped: dict[str, mmap.mmap] = {}
        try:
            for name, nbytes, _ in segments:
                mapped[name] = _attach_segment(name, nbytes)
        except BaseException:
            for name, _, _ in segments:
                if name not in mapped:
                    _unlink_quietly(name)
            raise

        class _Unpickler(pickle.Unpickler):
            def persistent_load(self, pid: Any) -> Any:
                is_bytearray, name = pid
                # bytes are immutable: one copy out of the mapping is unavoidable.
                view = memoryview(mapped[name])
                return bytearray(view) if is_bytearray else bytes(view)

        buffers = [memoryview(mapped[name]) for name, _, oob in segments if oob]
        return _Unpickler(io.BytesIO(payload), buffers=buffers).load()


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(os.path.join(SHM_DIR, name))
    except FileNotFoundError:
        pass
