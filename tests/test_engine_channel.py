"""Channel: batched hand-off, bounded capacity, order restoration, stop and end of stream."""

from __future__ import annotations

import threading

import pytest

from ftpipe._engine._channel import Channel, EndOfStream, Stopped


def test_unordered_channel_hands_over_batches_and_ends():
    ch = Channel(8, ordered=False)
    ch.put(0, 3, [1, 2, 3])
    ch.put(3, 4, [4])
    assert ch.get(10) == (0, [1, 2, 3, 4])
    ch.producer_done()
    with pytest.raises(EndOfStream):
        ch.get(10)


def test_get_numbers_values_by_arrival():
    ch = Channel(8, ordered=False)
    ch.put(0, 5, list("abcde"))
    assert ch.get(2) == (0, ["a", "b"])
    assert ch.get(2) == (2, ["c", "d"])
    assert ch.get(2) == (4, ["e"])


def test_ordered_channel_restores_producer_order():
    ch = Channel(8, ordered=True, producers=2)
    ch.put(2, 4, ["c", "d"])
    ch.put(4, 5, [])  # an input that produced nothing (skipped, or a generator that yielded none)
    ch.put(5, 6, ["f"])
    assert ch.occupancy() == 3
    ch.put(0, 2, ["a", "b"])
    assert ch.get(10) == (0, ["a", "b", "c", "d", "f"])


def test_partial_output_waits_for_head_then_stays_open():
    ch = Channel(8, ordered=True)
    ch.put(0, 0, ["x1"], final=False)
    ch.put(0, 1, ["x2"])
    ch.put(1, 2, ["y"])
    assert ch.get(10)[1] == ["x1", "x2", "y"]


def test_producer_blocks_when_full_until_consumer_takes():
    ch = Channel(2, ordered=False)
    ch.put(0, 2, [1, 2])
    entered, finished = threading.Event(), threading.Event()

    def producer():
        entered.set()
        ch.put(2, 3, [3])
        finished.set()

    t = threading.Thread(target=producer)
    t.start()
    entered.wait()
    assert not finished.wait(0.05)  # still blocked: the channel is full
    assert ch.get(1) == (0, [1])
    assert finished.wait(5)
    t.join()
    assert ch.get(10) == (1, [2, 3])


def test_ordered_window_blocks_far_ahead_producer():
    ch = Channel(2, ordered=True)
    done = threading.Event()

    def ahead():
        ch.put(5, 6, ["far"])  # outside the window [0, 2) until the head moves
        done.set()

    t = threading.Thread(target=ahead)
    t.start()
    assert not done.wait(0.05)
    ch.put(0, 1, ["a"])
    ch.put(1, 5, ["b"])
    assert ch.get(1) == (0, ["a"])
    assert ch.get(1) == (1, ["b"])
    assert done.wait(5)
    t.join()
    assert ch.get(5) == (2, ["far"])


def test_stop_wakes_blocked_producer_and_consumer():
    ch = Channel(1, ordered=False)
    ch.put(0, 1, [1])
    errors = []

    def blocked_put():
        try:
            ch.put(1, 2, [2])
        except Stopped:
            errors.append("put")

    empty = Channel(1, ordered=False)

    def blocked_get():
        try:
            empty.get(1)
        except Stopped:
            errors.append("get")

    threads = [threading.Thread(target=blocked_put), threading.Thread(target=blocked_get)]
    for t in threads:
        t.start()
    ch.stop()
    empty.stop()
    for t in threads:
        t.join(5)
    assert sorted(errors) == ["get", "put"]
    with pytest.raises(Stopped):
        ch.get(1)


def test_stream_ends_only_after_every_producer():
    ch = Channel(4, ordered=False, producers=2)
    ch.producer_done()
    ch.put(0, 1, ["late"])
    assert ch.get(4) == (0, ["late"])
    ch.producer_done()
    with pytest.raises(EndOfStream):
        ch.get(4)


def test_many_producers_and_consumers_deliver_everything_once():
    n_items, producers = 20_000, 4
    ch = Channel(16, ordered=False, producers=producers)
    got: list[list[int]] = [[] for _ in range(3)]

    def produce(k):
        for i in range(k, n_items, producers):
            ch.put(i, i + 1, [i])
        ch.producer_done()

    def consume(slot):
        while True:
            try:
                got[slot].extend(ch.get(7)[1])
            except EndOfStream:
                return

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(producers)]
    threads += [threading.Thread(target=consume, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(x for g in got for x in g) == list(range(n_items))
