"""Shared-memory segments as files under ``/dev/shm``: their names, and removing them.

Every segment's name starts with the prefix of the one worker (or pipeline
subprocess) that uses it, and the prefix carries the pid of the process that
made it (``new_prefix``).  Cleaning up is therefore one operation whoever does
it -- the parent once a worker is gone, a child whose parent died, a child
killed by SIGTERM -- ``remove_segments(prefix)``, and nothing depends on the
process that created a segment still being alive.  Views already mapped stay
valid after the name is removed.

Why files and not ``multiprocessing.shared_memory``: nothing here needs the
resource tracker (which warns about, and on 3.11/3.12 unlinks, segments it did
not create).
"""

from __future__ import annotations

import mmap
import os
import secrets
import signal

__all__ = [
    "AVAILABLE",
    "PAGE",
    "SHM_DIR",
    "map_segment",
    "new_prefix",
    "remove_segments",
    "remove_segments_on_sigterm",
    "unlink_segment",
]

SHM_DIR = "/dev/shm"
AVAILABLE = os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)
PAGE = mmap.PAGESIZE
# MAP_POPULATE faults the pages in with one kernel call instead of one fault per page.
_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def new_prefix() -> str:
    """Return a segment-name prefix unique to one executor (or pipeline) in this process."""
    return f"ftpipe-{os.getpid()}-{secrets.token_hex(4)}-"


def remove_segments(prefix: str) -> int:
    """Unlink every segment whose name starts with ``prefix``; return how many."""
    if not AVAILABLE:
        return 0
    removed = 0
    for entry in os.listdir(SHM_DIR):
        if entry.startswith(prefix):
            try:
                os.unlink(os.path.join(SHM_DIR, entry))
                removed += 1
            except FileNotFoundError:  # the peer removed it first
                pass
    return removed


def remove_segments_on_sigterm(prefix: str) -> None:
    """In a child process: on SIGTERM, unlink ``prefix``'s segments, then die of SIGTERM.

    A SIGTERM sent to a whole process group (a job scheduler stopping a job,
    ``timeout``) kills the parent at the same moment, and nobody else would
    remove these segments.  The handler runs between bytecodes, so a worker
    inside a long native call dies when the call returns (or by SIGKILL).
    """

    def handler(signum: int, frame: object) -> None:
        remove_segments(prefix)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handler)


def map_segment(name: str, size: int, create: bool) -> mmap.mmap:
    """Map segment ``name`` (``create``: a new one of ``size`` bytes, which must not exist)."""
    path = os.path.join(SHM_DIR, name)
    fd = os.open(path, (os.O_CREAT | os.O_EXCL | os.O_RDWR) if create else os.O_RDWR, 0o600)
    try:
        if create:
            os.ftruncate(fd, size)
        return mmap.mmap(fd, size, flags=_FLAGS)
    except BaseException:
        if create:
            os.unlink(path)
        raise
    finally:
        os.close(fd)


def unlink_segment(name: str) -> None:
    """Remove segment ``name`` if it is still there; mappings of it stay valid."""
    try:
        os.unlink(os.path.join(SHM_DIR, name))
    except FileNotFoundError:
        pass
