"""Pure logic of the dual store: dirty set, monitor, L1, flush policy, recovery records,
lifecycle transitions, and the flusher's retry and isolation over a failing table store."""

from __future__ import annotations

from msstore.codec import default_codec
from msstore.records import Entry, Operation, Record
from msstore.state import (
    records_for,
)


def test_records_for_keeps_the_newest_entry_and_turns_markers_into_tombstones() -> None:
    entries = [
        Entry("b", "a.x", b"1", 1, 10.0),
        Entry("b", "a.y", b"2", 2, 11.0),
        Entry("b", "a.x", b"3", 3, 12.0),
        Entry("b", "a.y", b"", 4, 13.0, Operation.DEL),
    ]
    records, poison = records_for(entries, 100, int)
    assert records == [
        Record("a.x", 3, 103, 12.0),
        Record("a.y", None, 104, 13.0, deleted=True),
    ]
    assert poison == []


def test_records_for_keeps_a_revisions_own_ttl_and_sets_undecodable_bytes_aside() -> None:
    entries = [
        Entry("b", "a.t", b"1", 1, 10.0, expires_at=15.0, ttl=5.0),
        Entry("b", "a.h", b"2", 2, 11.0, expires_at=1811.0),  # only the bucket's TTL
        Entry("b", "a.bad", b"\x00not json", 3, 12.0),
    ]
    records, poison = records_for(entries, 0, default_codec.decode)
    assert records == [Record("a.t", 1, 1, 10.0, 15.0), Record("a.h", 2, 2, 11.0)]
    assert [(e.key, e.revision) for e, _ in poison] == [("a.bad", 3)]
    assert "not valid JSON" in poison[0][1]
