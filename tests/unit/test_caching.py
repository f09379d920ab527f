"""Pure logic of the dual store: dirty set, monitor, L1, flush policy, recovery records,
lifecycle transitions, and the flusher's retry and isolation over a failing table store."""

from __future__ import annotations

import pytest

from msstore.errors import (
    InvalidArgument,
)
from msstore.state import (
    L1Cache,
)


def test_l1_is_bounded_expires_and_never_goes_back() -> None:
    now = [0.0]
    l1 = L1Cache(max_size=2, ttl=10, clock=lambda: now[0])
    l1.put("a", b"1", 1)
    l1.put("b", b"2", 2)
    assert l1.get("a") == (b"1", 1)  # a is now the most recent
    l1.put("c", b"3", 3)
    assert l1.get("b") is None and l1.evictions == 1
    l1.put("a", None, 7)  # invalidated at revision 7
    assert l1.get("a") is None
    l1.put("a", b"old", 6)  # a slow reader's older value is refused
    assert l1.get("a") is None
    l1.put("a", b"new", 8)
    assert l1.get("a") == (b"new", 8)
    now[0] = 11
    assert l1.get("a") is None
    with pytest.raises(InvalidArgument):
        L1Cache(max_size=-1)
