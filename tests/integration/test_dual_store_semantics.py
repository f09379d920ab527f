"""The dual store's promises, one claim per test, on every composition (memory+memory,
memory+postgres, nats+postgres): deletes and expiries are durable facts, a bad entry stops
nothing, a closed store is never written through."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from msstore.capabilities import Capability
from msstore.errors import FlushError, SerializationError, StoreClosed
from msstore.protocols import DataStorage, KeyValueStore
from msstore.state import FlushPolicy, HybridStateManager
from msstore.testing.foreign import foreign_put

Stores = Callable[..., tuple[KeyValueStore, DataStorage]]
HELD = FlushPolicy(threshold=10_000, max_lag=3600, reconcile_every=0)  # flushes only when asked


def test_a_late_flush_of_an_older_write_cannot_bring_a_delete_back(hybrid_stores: Stores) -> None:
    kv, storage = hybrid_stores()
    with (
        HybridStateManager(kv, storage, policy=HELD) as a,
        HybridStateManager(kv, storage, policy=HELD) as b,
    ):
        a.put("late.k", {"late": True})  # acknowledged, not flushed yet
        b.delete("late.k")
        b.flush()
        b.reconcile()  # the watermark moves past the delete
        a.flush()  # the older write arrives after all
        assert storage.retrieve("late.k") is None  # the tombstone refused it
        assert a.reconcile().written == 0
        assert storage.retrieve("late.k") is None


def test_hydrating_an_agent_never_recreates_a_deleted_key(hybrid_stores: Stores) -> None:
    kv, storage = hybrid_stores()
    storage.store("agX.y", "only in SQL")
    with HybridStateManager(kv, storage, policy=HELD) as m:
        m.put("agX.x", "X")
        m.flush()
        m.delete("agX.x")
        assert m.get("agX.y") == "only in SQL"  # hydrates the agent's rows into KV
        assert kv.get("agX.x") is None and m.get("agX.x") is None
        m.flush()
        m.reconcile()
        assert storage.retrieve("agX.x") is None


def test_a_values_own_ttl_is_kept_in_sql(hybrid_stores: Stores) -> None:
    kv, storage = hybrid_stores()
    with HybridStateManager(kv, storage, policy=HELD) as m:
        before = time.time()
        m.put("agT.k", "short-lived", ttl=600)
        m.put("agT.durable", "kept")
        m.flush()
        row = storage.retrieve("agT.k")
        assert row is not None and row.expires_at is not None
        assert before + 600 - 1 <= row.expires_at <= time.time() + 600 + 1
        durable = storage.retrieve("agT.durable")
        assert durable is not None and durable.expires_at is None  # the bucket TTL is not it


def test_update_with_checks_a_value_against_the_sql_tier_before_the_kv_write(
    hybrid_stores: Stores,
) -> None:
    kv, storage = hybrid_stores()
    with HybridStateManager(kv, storage, policy=HELD) as m:
        m.put("nul.k", "clean")
        if Capability.NUL_IN_STRINGS in storage.capabilities:  # this SQL tier holds U+0000
            m.update_with("nul.k", lambda _: "a\x00b")
            m.flush()
            row = storage.retrieve("nul.k")
            assert row is not None and row.value == "a\x00b"
            return
        with pytest.raises(SerializationError):  # PostgreSQL's JSONB cannot
            m.update_with("nul.k", lambda _: "a\x00b")
        entry = kv.get("nul.k")
        assert entry is not None and entry.value == "clean"  # nothing reached KV


def test_one_undecodable_entry_does_not_stop_recovery(hybrid_stores: Stores) -> None:
    kv, storage = hybrid_stores()
    kv.put("pz.good1", 1)
    _put_raw(kv, "pz.bad", b"\x00not json")
    kv.put("pz.good2", 2)
    with HybridStateManager(kv, storage, policy=HELD) as m:  # its opening recovery runs
        report = m.last_recovery
        assert report is not None and [f.key for f in report.failures] == ["pz.bad"]
        assert {r.key: r.value for r in storage.search("pz.")} == {"pz.good1": 1, "pz.good2": 2}
        assert [f["key"] for f in m.stats()["recovery"]["failures"]] == ["pz.bad"]
        failures = storage.flush_failures(kv.name)  # type: ignore[attr-defined]
        assert [(f.key, f.reason.startswith("undecodable")) for f in failures] == [("pz.bad", True)]
        assert m.reconcile().read == 0  # the watermark moved past it
    HybridStateManager(kv, storage).close()  # and the next manager opens too


@pytest.mark.postgres
@pytest.mark.parametrize("hybrid_stores", ["memory+postgres", "nats+postgres"], indirect=True)
def test_a_row_postgresql_refuses_fails_flush_and_the_rest_are_stored(
    hybrid_stores: Stores,
) -> None:
    kv, storage = hybrid_stores()
    assert Capability.NUL_IN_STRINGS not in storage.capabilities
    with HybridStateManager(kv, storage, policy=HELD) as m:
        m.put("rf.ok", 1)
        _put_raw(kv, "rf.nul", b'"a\\u0000b"')  # JSON that PostgreSQL's JSONB refuses
        m.dirty.add("rf.nul", b'"a\\u0000b"', kv.get("rf.nul").revision)  # type: ignore[union-attr]
        with pytest.raises(FlushError) as raised:
            m.flush()
        assert [f.key for f in raised.value.failures] == ["rf.nul"]
        assert storage.retrieve("rf.ok") is not None


def test_a_manager_refuses_writes_once_its_store_is_closed(hybrid_stores: Stores) -> None:
    kv, storage = hybrid_stores()
    m = HybridStateManager(kv, storage, policy=HELD)
    m.put("cl.k", 1)
    storage.close()
    with pytest.raises(StoreClosed):
        m.put("cl.k", 2)
    with pytest.raises(StoreClosed):
        m.flush()
    entry = kv.get("cl.k")
    assert entry is not None and entry.value == 1  # the refused put wrote nothing


def _put_raw(kv: KeyValueStore, key: str, raw: bytes) -> None:
    """Bytes as another client would write them, not through msstore's codec."""
    foreign_put(kv, key, raw)
