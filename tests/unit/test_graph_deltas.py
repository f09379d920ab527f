"""Channel values as deltas on their previous version: round trips, and when they do not pay."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msstore.errors import SerializationError
from msstore.graphs._deltas import MIN_BODY, apply, encode

items = st.lists(st.binary(min_size=1, max_size=40), min_size=3, max_size=30)


def framed(parts: list[bytes]) -> bytes:
    """A length header (1 to 5 bytes, as msgpack's) and the parts."""
    n = len(parts)
    header = bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
    return header + b"".join(parts)


@given(items, st.lists(st.binary(min_size=1, max_size=40), max_size=3))
def test_an_appended_list_is_a_small_delta_that_round_trips(
    old: list[bytes], more: list[bytes]
) -> None:
    before, after = framed(old), framed(old + more)
    delta = encode(before, after)
    if delta is not None:
        assert apply(before, delta) == after
        assert len(delta) * 2 < len(after)
    elif len(before) >= 4 * MIN_BODY and sum(map(len, more)) < 8:
        pytest.fail("a long list with a little appended should be a delta")


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_any_pair_round_trips_or_is_stored_whole(old: bytes, new: bytes) -> None:
    delta = encode(old, new)
    assert delta is None or apply(old, delta) == new


def test_an_edited_list_is_stored_whole() -> None:
    parts = [bytes([i]) * 30 for i in range(20)]
    edited = [*parts[:5], b"x" * 30, *parts[6:]]
    assert encode(framed(parts), framed(edited)) is None


def test_a_delta_on_the_wrong_base_is_refused() -> None:
    parts = [bytes([i]) * 30 for i in range(20)]
    delta = encode(framed(parts), framed([*parts, b"new"]))
    assert delta is not None
    with pytest.raises(SerializationError):
        apply(framed(parts[:-1]), delta)
    with pytest.raises(SerializationError):
        apply(framed(parts), delta[:5])
