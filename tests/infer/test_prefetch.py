"""The background-thread prefetch that overlaps decoding with the model."""

from __future__ import annotations

import threading
import time

import pytest

from lofi.infer.prefetch import prefetch


def test_order_and_bounded_lookahead():
    produced = []

    def items():
        for i in range(10):
            produced.append(i)
            yield i

    seen = []
    for item in prefetch(items(), depth=2):
        time.sleep(0.01)
        assert len(produced) - len(seen) <= 2 + 2  # the queue, plus one in the producer's hand, plus this one
        seen.append(item)
    assert seen == list(range(10))


def test_an_exception_arrives_in_its_place():
    def items():
        yield 1
        yield 2
        raise KeyError("decoder broke")

    got = []
    with pytest.raises(KeyError, match="decoder broke"):
        for item in prefetch(items(), depth=4):
            got.append(item)
    assert got == [1, 2]


def test_closing_early_stops_the_thread():
    def items():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    for item in prefetch(items(), depth=2, name="test-prefetch"):
        if item == 3:
            break
    deadline = time.time() + 5
    while any(t.name == "test-prefetch" for t in threading.enumerate()) and time.time() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "test-prefetch" for t in threading.enumerate())
    assert threading.active_count() <= before
    with pytest.raises(ValueError, match="depth must be >= 1"):
        next(prefetch([1], depth=0))
