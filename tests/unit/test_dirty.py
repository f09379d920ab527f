"""Pure logic of the dual store: dirty set, monitor, L1, flush policy, recovery records,
lifecycle transitions, and the flusher's retry and isolation over a failing table store."""

from __future__ import annotations

from msstore.state import (
    DirtySet,
)


def test_dirty_set_keeps_the_newest_write_per_key_and_the_oldest_start() -> None:
    dirty = DirtySet(threshold=3)
    first = dirty.add("a.k", b"1", 1)
    dirty.add("a.k", b"2", 5)
    stale = dirty.add("a.k", b"0", 3)  # an older revision arriving late changes nothing
    assert stale.revision == 5
    with dirty:
        batch = dirty.take()
        assert [(p.key, p.raw, p.revision) for p in batch] == [("a.k", b"2", 5)]
        assert batch[0].first_at == first.first_at and batch[0].first_seq == first.seq
        assert dirty.lowest_seq() == first.seq  # in flight still counts
    dirty.add("a.k", b"3", 6)
    with dirty:
        dirty.restore(batch)  # failed: the newer pending write keeps the older start
        assert len(dirty) == 1 and dirty.lowest_seq() == first.seq
        assert dirty.take()[0].revision == 6
