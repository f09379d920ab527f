"""Pure logic of the dual store: dirty set, monitor, L1, flush policy, recovery records,
lifecycle transitions, and the flusher's retry and isolation over a failing table store."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from msstore.backends.memory import MemoryKV, MemoryTable
from msstore.errors import (
    ConnectionFailed,
    FlushError,
    InvalidArgument,
    SerializationError,
)
from msstore.records import Record, UpsertResult
from msstore.state import (
    FlushPolicy,
    HealthStatus,
    HybridStateManager,
)


@pytest.mark.parametrize(
    "bad",
    [{"threshold": 0}, {"threshold": 1.5}, {"max_lag": 0}, {"reconcile_every": -1}],
)
def test_flush_policy_refuses_bad_settings(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        FlushPolicy(**bad)


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
        assert [f.key for f in raised.value.failures] == ["a.bad"]
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
