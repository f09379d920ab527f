from __future__ import annotations

import json

import pytest

from msstore.conflicts import (
    HLC,
    Stamp,
    VectorClock,
)
from msstore.errors import SerializationError


def test_hlc_is_monotonic_when_the_wall_clock_stands_still_or_goes_back() -> None:
    wall = [1000]
    clock = HLC("a", wall_ms=lambda: wall[0])
    first = clock.now()
    second = clock.now()
    wall[0] = 500  # the wall clock jumps back
    third = clock.now()
    assert first < second < third
    assert (third.wall_ms, third.logical) == (1000, 2)


def test_hlc_observe_moves_past_a_remote_stamp() -> None:
    clock = HLC("a", wall_ms=lambda: 1000)
    after = clock.observe(Stamp(5000, 3, "b"))
    assert after > Stamp(5000, 3, "b") and after.node == "a"
    assert clock.now() > after


def test_stamps_tie_break_by_writer() -> None:
    assert Stamp(1, 0, "b") > Stamp(1, 0, "a")
    assert Stamp.from_doc(Stamp(7, 2, "x").to_doc()) == Stamp(7, 2, "x")
    with pytest.raises(SerializationError):
        Stamp.from_doc([1, "two", "x"])


def test_vector_clock_order() -> None:
    a = VectorClock().increment("a")
    ab = a.increment("b")
    c = VectorClock().increment("c")
    assert ab.dominates(a) and not a.dominates(ab) and ab.descends(a)
    assert a.concurrent(c) and not a.dominates(c)
    assert a.merge(c).descends(a) and a.merge(c).descends(c)
    assert VectorClock.from_doc(json.loads(json.dumps(ab.to_doc()))) == ab


def test_vector_clock_pruning_keeps_the_writer_and_bounds_size() -> None:
    clock = VectorClock()
    for i in range(10):
        clock = clock.increment(f"w{i}", max_entries=4, now_ms=i)
    assert len(clock.counters) == 4 and "w9" in clock.counters
    assert set(clock.counters) == {"w6", "w7", "w8", "w9"}  # the longest untouched went first
