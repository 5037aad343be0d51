"""The shared-memory pickle transport: zero-copy receive, safe reuse, nothing left behind."""

from __future__ import annotations

import gc
import mmap
import os
import pickle
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from ftpipe.executors import _segments, _shm

pytestmark = pytest.mark.skipif(not _segments.AVAILABLE, reason="no writable /dev/shm here")


def _names(prefix: str) -> set[str]:
    return {e for e in os.listdir(_segments.SHM_DIR) if e.startswith(prefix)}


@pytest.fixture
def pair() -> Iterator[tuple[_shm.Endpoint, _shm.Endpoint]]:
    prefix = _segments.new_prefix()
    a, b = _shm.Endpoint(f"{prefix}a"), _shm.Endpoint(f"{prefix}b")
    yield a, b
    a.close()
    b.close()
    _segments.remove_segments(prefix)
    assert _names(prefix) == set()


def test_arrays_arrive_as_views_of_the_segment(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    x = np.arange(1 << 20, dtype=np.float32)
    message = a.dumps((x, "tag"))
    assert len(message) < 4096  # the data did not go into the pickle
    y, tag = b.loads(message)
    assert tag == "tag" and np.array_equal(x, y) and y.flags.writeable
    owner, depth = y, 0
    while not isinstance(owner, mmap.mmap) and owner is not None and depth < 8:
        owner = owner.obj if isinstance(owner, memoryview) else owner.base
        depth += 1
    assert isinstance(owner, mmap.mmap), f"the received array is backed by {owner!r}"
    # What the receiver got is the segment itself, not a copy of it: a write through
    # its array is in the segment's file (and not in the sender's array).
    _, used, _ = pickle.loads(message)  # (payload, (segment, [(offset, nbytes, oob)]), ...)
    name, ((offset, nbytes, _),) = used
    assert offset == 0 and nbytes == x.nbytes and name in _names(a.prefix)
    y[:4] = [42.0, 43.0, 44.0, 45.0]
    with open(os.path.join(_segments.SHM_DIR, name), "rb") as segment:
        head = np.frombuffer(segment.read(16), dtype=np.float32)
    assert head.tolist() == [42.0, 43.0, 44.0, 45.0]
    assert x[:4].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_segments_are_reused_only_after_the_receiver_drops_its_views(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    first = b.loads(a.dumps(np.full(1 << 18, 1.0)))
    kept = b.loads(a.dumps(np.full(1 << 18, 2.0)))
    assert len(_names(a.prefix)) == 2
    del first
    gc.collect()
    a.loads(b.dumps(None))  # the reply carries the release notice
    third = b.loads(a.dumps(np.full(1 << 18, 3.0)))
    assert len(_names(a.prefix)) == 2  # reused the released segment
    assert float(kept[0]) == 2.0 and float(third[0]) == 3.0  # the kept view was not overwritten


def test_the_large_buffers_of_one_message_share_one_segment(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    sent = [np.full(50_000 + i, i, dtype=np.float32) for i in range(10)]
    blob = os.urandom(100_000)
    got, got_blob = b.loads(a.dumps((sent, blob)))
    assert len(_names(a.prefix)) == 1
    assert got_blob == blob
    for x, y in zip(sent, got, strict=True):
        assert y.dtype == np.float32 and np.array_equal(x, y)
        assert y.ctypes.data % 64 == 0  # every piece starts aligned
    # The segment comes back only once the receiver dropped every array from it.
    kept = got[7]
    del got, y
    gc.collect()
    a.loads(b.dumps(None))
    assert not a._free
    del kept
    gc.collect()
    a.loads(b.dumps(None))
    assert len(a._free) == 1


def test_small_buffers_stay_in_band(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    assert list(b.loads(a.dumps(np.arange(10)))) == list(range(10))
    assert _names(a.prefix) == set()
    payload, used, _ = pickle.loads(a.dumps({"k": [1, 2]}))
    assert used == () and pickle.loads(payload) == {"k": [1, 2]}


# shares a module-scoped executor/endpoint or counts process-wide threads, workers or segments
@pytest.mark.thread_unsafe
def test_large_bytes_and_bytearrays(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    big = os.urandom(1 << 20)
    message = a.dumps([{"b": big, "ba": bytearray(big[:200_000]), "small": b"x"}])
    assert len(message) < 4096
    out = b.loads(message)[0]
    assert out["b"] == big and type(out["b"]) is bytes
    assert out["ba"] == bytearray(big[:200_000]) and type(out["ba"]) is bytearray
    a.loads(b.dumps(None))
    assert len(a._free) == 1  # one segment per message, copied out on receipt: released at once


# shares a module-scoped executor/endpoint or counts process-wide threads, workers or segments
@pytest.mark.thread_unsafe
def test_a_failed_pickle_returns_its_segments(pair) -> None:  # type: ignore[no-untyped-def]
    a, _ = pair
    with pytest.raises(TypeError):
        a.dumps((np.zeros(1 << 18), threading.Lock()))
    assert not a._lent and not a._free  # segments are taken only once the pickle succeeded
    assert _names(a.prefix) == set()


def _release_all(a: _shm.Endpoint, b: _shm.Endpoint, views: list[object]) -> None:
    views.clear()
    gc.collect()
    a.loads(b.dumps(None))  # the reply carries the release notices


def test_free_segments_are_kept_up_to_the_peak_in_use(pair) -> None:  # type: ignore[no-untyped-def]
    # A consumer that holds 11 results at once needs 11 segments: keeping them all
    # means the next round reuses them instead of creating (and page-faulting) new ones.
    a, b = pair
    n = _shm.MIN_FREE + 3
    views = [b.loads(a.dumps(np.zeros(1 << 16, dtype=np.uint8))) for _ in range(n)]
    _release_all(a, b, views)
    assert len(a._free) == n
    views = [b.loads(a.dumps(np.ones(1 << 16, dtype=np.uint8))) for _ in range(n)]
    assert len(_names(a.prefix)) == n  # all reused, none created
    assert all(int(v[0]) == 1 for v in views)


def test_free_list_is_bounded_and_the_peer_forgets_destroyed_segments(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    # Lent one at a time, never reusable (each larger than the last): MIN_FREE are kept.
    for i in range(_shm.MIN_FREE + 3):
        one = [b.loads(a.dumps(np.zeros((1 << 16) + _segments.PAGE * i, dtype=np.uint8)))]
        _release_all(a, b, one)
    assert len(a._free) == _shm.MIN_FREE
    assert len(_names(a.prefix)) == _shm.MIN_FREE
    # Lent all at once: at most MAX_FREE are kept.
    views = [b.loads(a.dumps(np.zeros(1 << 16, dtype=np.uint8))) for _ in range(_shm.MAX_FREE + 3)]
    _release_all(a, b, views)
    assert len(a._free) == _shm.MAX_FREE
    assert len(_names(a.prefix)) == _shm.MAX_FREE
    b.loads(a.dumps(None))  # carries the destroyed names
    assert len(b._peer) == _shm.MAX_FREE


# shares a module-scoped executor/endpoint or counts process-wide threads, workers or segments
@pytest.mark.thread_unsafe
def test_remove_segments_removes_every_name_with_the_prefix(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    b.loads(a.dumps(np.zeros(1 << 18)))
    a.dumps(np.zeros(1 << 18))  # never received
    assert _segments.remove_segments(a.prefix) == 2


def test_a_view_dying_while_a_release_is_noted_does_not_deadlock(pair) -> None:  # type: ignore[no-untyped-def]
    # On free-threaded builds a view's finalizer runs inside whatever bytecode its
    # owner thread is executing, including another view's finalizer: noting a
    # release must never wait for something the same thread may hold.
    a, b = pair
    first = b.loads(a.dumps(np.full(1 << 18, 1.0)))
    second = [b.loads(a.dumps(np.full(1 << 18, 2.0)))]

    class Reentrant(type(b._released)):  # type: ignore[misc]
        def append(self, name: str) -> None:
            if second:
                second.pop()  # the second view dies inside the first one's notice
                gc.collect()
            super().append(name)

    b._released = Reentrant(b._released)
    done = threading.Event()

    def drop() -> None:
        nonlocal first
        del first
        gc.collect()
        done.set()

    worker = threading.Thread(target=drop, daemon=True)
    worker.start()
    assert done.wait(10), "noting a release deadlocked"
    assert len(b._released) == 2
    a.loads(b.dumps(None))
    assert a._free and not a._lent  # both segments came back to the sender
