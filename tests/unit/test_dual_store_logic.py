"""Pure logic of the dual store: dirty set, monitor, L1, flush policy, recovery records,
lifecycle transitions, and the flusher's retry and isolation over a failing table store."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import pytest

from msstore.backends.memory import MemoryKV, MemoryTable
from msstore.codec import default_codec
from msstore.errors import (
    ConnectionFailed,
    ConsistencyViolation,
    FlushError,
    InvalidArgument,
    SerializationError,
)
from msstore.records import Entry, Operation, Record, UpsertResult
from msstore.state import (
    ConsistencyMonitor,
    DirtySet,
    FlushPolicy,
    HealthStatus,
    HybridStateManager,
    L1Cache,
    LifecycleState,
    check_transition,
    percentile,
    records_for,
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


def test_monitor_percentiles_violations_and_health() -> None:
    assert percentile([], 95) == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    monitor = ConsistencyMonitor(window=0.2)
    monitor.record([0.01] * 95)
    assert monitor.health() is HealthStatus.HEALTHY
    monitor.record([0.5] * 10)
    stats = monitor.stats()
    assert stats["violations"] == 10 and stats["writes"] == 105
    assert stats["p95_ms"] == 500.0 and stats["status"] == "DEGRADED"
    monitor.pending_since(time.monotonic() - 60)
    assert monitor.health() is HealthStatus.UNHEALTHY
    monitor.pending_since(None)
    monitor.reset()
    assert monitor.stats()["writes"] == 0
    with pytest.raises(ValueError, match="positive"):
        ConsistencyMonitor(window=0)


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


@pytest.mark.parametrize(
    "bad",
    [{"threshold": 0}, {"threshold": 1.5}, {"max_lag": 0}, {"reconcile_every": -1}],
)
def test_flush_policy_refuses_bad_settings(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        FlushPolicy(**bad)


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


def test_lifecycle_transitions() -> None:
    check_transition("a", LifecycleState.COLD, LifecycleState.HYDRATING)
    check_transition("a", LifecycleState.FLUSHING, LifecycleState.ACTIVE)
    with pytest.raises(ConsistencyViolation, match="allowed: HYDRATING"):
        check_transition("a", LifecycleState.COLD, LifecycleState.ACTIVE)


class FlakyTable(MemoryTable):
    """A table store whose bulk upsert fails ``failures`` times (a PostgreSQL outage) or
    refuses one key for good (a row the SQL tier cannot take)."""

    def __init__(self, *, failures: int = 0, poison: str | None = None) -> None:
        super().__init__()
        self.failures = failures
        self.poison = poison
        self.calls = 0

    def upsert_many(self, records: Iterable[Record]) -> UpsertResult:
        self.calls += 1
        records = list(records)
        if self.failures:
            self.failures -= 1
            raise ConnectionFailed("PostgreSQL is down")
        if any(r.key == self.poison for r in records):
            raise SerializationError("refused", key=self.poison)
        return super().upsert_many(records)


def test_flusher_retries_until_the_table_store_is_back() -> None:
    table = FlakyTable(failures=3)
    policy = FlushPolicy(threshold=1, retry_initial=0.01, retry_max=0.05)
    with HybridStateManager(MemoryKV(), table, policy=policy) as m:
        m.put("a.k", 1)
        m.flush(timeout=10)
        assert table.retrieve("a.k").value == 1  # type: ignore[union-attr]
        assert m.stats()["flush"]["retries"] == 3


def test_flush_times_out_with_outcome_unknown_while_sql_is_down() -> None:
    from msstore.errors import OutcomeUnknown

    table = FlakyTable(failures=10**6)
    policy = FlushPolicy(threshold=1, retry_initial=0.01, retry_max=0.02)
    m = HybridStateManager(MemoryKV(), table, policy=policy)
    m.put("a.k", 1)
    with pytest.raises(OutcomeUnknown, match="PostgreSQL is down"):
        m.flush(timeout=0.3)
    assert m.health() is not HealthStatus.HEALTHY
    with pytest.raises(OutcomeUnknown):
        m.close(timeout=0.2)


def test_a_refused_row_is_isolated_and_the_rest_stored() -> None:
    table = FlakyTable(poison="a.bad")
    policy = FlushPolicy(threshold=10, max_lag=10)
    with HybridStateManager(MemoryKV(), table, policy=policy) as m:
        m.put_many({f"a.k{i}": i for i in range(9)} | {"a.bad": "x"})
        with pytest.raises(FlushError, match=r"a\.bad") as raised:
            m.flush()
        assert [f.key for f in raised.value.failures] == ["a.bad"]  # type: ignore[attr-defined]
        assert len(table.search("a.k")) == 9
        assert m.stats()["flush"]["failed"] == 1
        assert [f.key for f in m.flusher.failed] == ["a.bad"]
        assert [f.key for f in table.flush_failures(m.kv.name)] == ["a.bad"]
        m.flush()  # reported once: the next flush has nothing new to say


def test_a_transient_failure_of_the_opening_recovery_is_retried() -> None:
    kv = MemoryKV()
    kv.put("a.k", 1)  # acknowledged by a process that died before flushing
    table = FlakyTable(failures=2)  # e.g. a deadlock with another process's flush
    with HybridStateManager(kv, table) as m:
        assert m.last_recovery is not None and m.last_recovery.written == 1
    assert table.calls == 3 and table.retrieve("a.k").value == 1  # type: ignore[union-attr]
    never = FlakyTable(failures=10**6)
    with pytest.raises(ConnectionFailed):  # a lasting one still fails the start, after retries
        HybridStateManager(kv, never)
    assert never.calls == 6
