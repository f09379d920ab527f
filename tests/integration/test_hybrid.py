"""The hybrid state manager over memory+memory, memory+postgres and nats+postgres."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from msstore.capabilities import Capability
from msstore.conflicts import CRDTMerge, PNCounter, RetryPolicy
from msstore.conflicts.crdt import from_doc
from msstore.errors import InvalidKey, SerializationError
from msstore.protocols import DataStorage, KeyValueStore
from msstore.state import FlushPolicy, HybridStateManager, L1Cache
from msstore.testing import eventually

Make = Callable[..., tuple[KeyValueStore, DataStorage]]


def manager(kv: KeyValueStore, storage: DataStorage, **policy: Any) -> HybridStateManager:
    return HybridStateManager(kv, storage, policy=FlushPolicy(**policy) if policy else None)


def test_writes_reach_sql_with_their_kv_revision_as_version(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    with manager(kv, storage) as m:
        revisions = [m.put(f"a1.k{i}", {"i": i, "text": "é'\";--"}) for i in range(20)]
        m.flush()
        for i, revision in enumerate(revisions):
            record = storage.retrieve(f"a1.k{i}")
            assert record is not None
            assert record.value == {"i": i, "text": "é'\";--"}
            assert record.version == m.version_of(revision)
            assert kv.get(f"a1.k{i}").revision == revision  # type: ignore[union-attr]
        stats = m.stats()
        assert stats["flush"]["rows_written"] == 20
        assert stats["consistency"]["writes"] == 20
        assert stats["flush"]["pending"] == 0


def test_threshold_triggers_a_flush_without_waiting_for_max_lag(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    with manager(kv, storage, threshold=5, max_lag=60.0) as m:
        for i in range(5):
            m.put(f"a1.k{i}", i)
        # The batch counter moves just after the commit: wait for it, not for the row.
        eventually(lambda: m.stats()["flush"]["batches"] >= 1, what="the threshold's flush")
        assert storage.retrieve("a1.k4") is not None
        # One batch of all five: nothing went before the fifth write reached the threshold.
        flushed = m.stats()["flush"]
        assert (flushed["batches"], flushed["rows_written"]) == (1, 5)


def test_max_lag_triggers_a_flush_below_the_threshold(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    with manager(kv, storage, threshold=1000, max_lag=0.05) as m:
        m.put("a1.lonely", "x")
        eventually(lambda: storage.retrieve("a1.lonely"), what="the max-lag flush")


def test_expired_kv_entry_is_read_from_sql_and_hydrates_the_agent(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores(ttl=1)
    m = HybridStateManager(kv, storage, l1=L1Cache(max_size=0))
    with m:
        m.put("a7.plan", {"step": 3})
        m.put("a7.notes", ["a", "b"])
        m.put("a8.other", 1)
        m.flush()
        eventually(lambda: kv.get("a7.plan") is None, what="the KV TTL")  # expired in KV
        value, revision, tier = m.get_with_revision("a7.plan")  # type: ignore[misc]
        assert (value, tier) == ({"step": 3}, "sql")
        assert kv.get("a7.plan").value == {"step": 3}  # type: ignore[union-attr]
        assert kv.get("a7.plan").revision == revision  # type: ignore[union-attr]
        assert kv.get("a7.notes").value == ["a", "b"]  # type: ignore[union-attr] # same agent
        assert kv.get("a8.other") is None  # another agent: not hydrated
        assert m.get_with_revision("a7.notes")[2] == "kv"  # type: ignore[index]
        stats = m.stats()["cache"]
        assert stats["sql_hits"] == 1 and stats["kv_hits"] == 1 and stats["hydrated"] == 2
        assert m.get("a9.never") is None
        assert m.stats()["cache"]["sql_misses"] == 1


def test_hydration_never_overwrites_a_newer_kv_write(
    hybrid_stores: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv, storage = hybrid_stores()
    storage.store("a1.k", "old from sql")
    with HybridStateManager(kv, storage, l1=L1Cache(max_size=0)) as m:
        kv.put("a1.k", "new in kv")
        assert m.get("a1.k") == "new in kv"
        kv.delete("a1.k")
        assert m.get("a1.k") is None  # a delete marker is not an expiry: no SQL fallback
        storage.store("a1.j", "old from sql")
        # between the KV miss and the hydration another writer lands: create() refuses to
        # overwrite it, and the reader returns the newer value
        original = storage.retrieve

        def slow_retrieve(key: str) -> Any:
            record = original(key)
            kv.put(key, "written meanwhile")
            return record

        monkeypatch.setattr(storage, "retrieve", slow_retrieve)
        assert m.get("a1.j") == "written meanwhile"
        assert kv.get("a1.j").value == "written meanwhile"  # type: ignore[union-attr]


def test_an_older_version_never_overwrites_a_newer_row(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    with manager(kv, storage) as m:
        revision = m.put("a1.k", "from kv")
        storage.store("a1.k", "newer elsewhere", version=m.version_of(revision) + 100)
        m.flush()
        assert storage.retrieve("a1.k").value == "newer elsewhere"  # type: ignore[union-attr]
        assert m.stats()["flush"]["rows_skipped"] == 1


def test_delete_removes_the_row_with_the_next_flush(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    with manager(kv, storage) as m:
        m.put("a1.k", 1)
        m.flush()
        m.delete("a1.k")
        assert m.get("a1.k") is None or kv.get("a1.k") is None
        m.flush()
        assert storage.retrieve("a1.k") is None
        assert m.get("a1.k") is None
        m.put("a1.k", 2)  # and it can come back
        m.flush()
        assert storage.retrieve("a1.k").value == 2  # type: ignore[union-attr]


def test_a_write_is_encoded_once_and_every_tier_holds_it_exactly(hybrid_stores: Make) -> None:
    import hashlib

    from msstore.codec import default_codec

    kv, storage = hybrid_stores()
    value = {"z": [1e16, 2**70, -0.5], "a": {"y": "ü", "b": None}}
    canonical = default_codec.encode_canonical(value).data
    with manager(kv, storage) as m:
        m.put("a1.exact", value)
        m.put_many({"a1.many": value})
        m.flush()
    for key in ("a1.exact", "a1.many"):
        entry = kv.get(key)
        assert entry is not None and entry.raw == canonical  # the bytes the flusher handed on
        rec = storage.retrieve(key)
        assert rec is not None and rec.value == value
        assert [type(x) for x in rec.value["z"]] == [float, int, float]
    pool = getattr(storage, "_pool", None)
    if pool is not None:  # PostgreSQL: the checksum of the canonical JSON, from those bytes
        with pool.connection() as conn:
            checksums = {
                r[0]
                for r in conn.execute(
                    "SELECT checksum FROM agents.state WHERE state_key LIKE 'a1.%'"
                ).fetchall()
            }
        assert checksums == {hashlib.sha256(canonical.lstrip(b" ")).hexdigest()}


def test_bad_input_is_refused_before_anything_is_written(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    with manager(kv, storage) as m:
        with pytest.raises(InvalidKey):
            m.put("bad key", 1)
        with pytest.raises(SerializationError):
            m.put("a1.k", {1, 2})
        with pytest.raises(SerializationError):
            m.put_many({"a1.ok": 1, "a1.bad": float("nan")})
        if Capability.NUL_IN_STRINGS not in storage.capabilities:
            with pytest.raises(SerializationError, match="U\\+0000"):
                m.put("a1.nul", {"t": "a\x00b"})
        m.flush()
        assert kv.keys() == []
        assert storage.search("a1.") == []
        assert m.stats()["flush"]["failed"] == 0


def test_an_abandoned_managers_writes_are_recovered_by_the_next(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    crashed = HybridStateManager(kv, storage, policy=FlushPolicy(threshold=10_000, max_lag=3600))
    acknowledged = {f"a1.k{i}": {"v": i} for i in range(30)}
    for key, value in acknowledged.items():
        crashed.put(key, value)
    crashed.delete("a1.k0")
    del acknowledged["a1.k0"]
    crashed.abandon()  # the process "dies": its dirty set is lost, its flusher stops
    assert storage.search("a1.") == []
    with HybridStateManager(kv, storage) as recovered:
        report = recovered.last_recovery
        assert report is not None and report.read == 31
        rows = {r.key: r.value for r in storage.search("a1.")}
        assert rows == acknowledged
        assert recovered.reconcile().read == 0  # the watermark moved


def test_a_new_bucket_incarnation_gets_versions_above_the_old_rows(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores(name="first")
    with manager(kv, storage) as m:
        for i in range(10):
            m.put("a1.k", i)
    assert storage.retrieve("a1.k").version >= 10  # type: ignore[union-attr]
    fresh_kv, _ = hybrid_stores(name="second")  # revisions start over at 1
    with HybridStateManager(fresh_kv, storage) as m2:
        m2.put("a1.k", "after the re-creation")
        m2.flush()
    assert storage.retrieve("a1.k").value == "after the re-creation"  # type: ignore[union-attr]


def test_concurrent_update_with_through_two_managers(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    m1, m2 = manager(kv, storage), manager(kv, storage)
    resolver = CRDTMerge(PNCounter)
    errors: list[BaseException] = []

    def bump(m: HybridStateManager, node: str) -> None:
        try:
            for _ in range(25):
                m.update_with(
                    "a1.counter",
                    lambda c, node=node: c.increment(node),  # type: ignore[misc]
                    resolver=resolver,
                    policy=RetryPolicy.hot_key(),
                )
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=bump, args=(m, n)) for m, n in ((m1, "p1"), (m2, "p2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    m1.close()
    m2.close()
    stored = storage.retrieve("a1.counter")
    assert stored is not None
    assert from_doc(stored.value).value == 50


def test_update_with_sees_a_value_only_sql_still_has(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    storage.store("a1.n", 41)
    with manager(kv, storage) as m:
        assert m.update_with("a1.n", lambda n: (n or 0) + 1).value == 42
        m.flush()
        assert storage.retrieve("a1.n").value == 42  # type: ignore[union-attr]


def test_l1_is_refreshed_by_own_writes_and_invalidated_by_others(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    with HybridStateManager(kv, storage, watch=True) as m:
        m.put("a1.k", "mine")
        assert m.get_with_revision("a1.k")[2] == "l1"  # type: ignore[index]
        kv.put("a1.k", "another process")  # not through this manager
        eventually(lambda: m.get("a1.k") == "another process", what="the other write")
        assert m.stats()["cache"]["invalidations"] >= 1


def test_close_flushes_and_refuses_later_calls(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    m = manager(kv, storage, threshold=10_000, max_lag=3600)
    m.put("a1.k", "last")
    m.close()
    assert storage.retrieve("a1.k").value == "last"  # type: ignore[union-attr]
    with pytest.raises(Exception, match="closed"):
        m.put("a1.k", "too late")
    m.close()  # idempotent
