"""The conformance suite: one set of cases every backend of a protocol must pass.

Use it like dogpile's fixtures: subclass a suite and provide its factory fixture. The suite's
cases run against every parameter of that fixture, so ids name the backend::

    import pytest
    from msstore.testing.conformance import KeyValueConformance

    @pytest.fixture(params=["redis"])
    def kv_factory(request):
        def make(config):          # a BucketConfig with a unique name for this test
            return RedisKV(config)
        return make

    class TestRedisKV(KeyValueConformance):
        pass

A capability the store declares is exercised; one it does not declare must raise
``Unsupported``. Cases that wait for a TTL take about two seconds.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from msstore.buckets import BucketConfig
from msstore.capabilities import Capability
from msstore.codec import Encoded, default_codec, has_nul
from msstore.errors import (
    DuplicateKey,
    InvalidArgument,
    InvalidKey,
    SerializationError,
    Unsupported,
    VersionConflict,
)
from msstore.protocols import DataStorage, KeyValueStore, VectorIndex
from msstore.records import Operation, Query, Record

__all__ = [
    "BAD_KEYS",
    "BAD_TTLS",
    "BAD_VALUES",
    "JSON_VALUES",
    "DataStorageConformance",
    "KeyValueConformance",
    "VectorIndexConformance",
]

KVFactory = Callable[[BucketConfig], KeyValueStore]


class _Opaque:
    pass


JSON_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    2**100,
    -(2**80),
    0.0,
    -0.0,
    1.5,
    -2.25e-300,
    1.7976931348623157e308,
    "",
    "x",
    "ünïcödé ✓ 🚀",
    "\u0000nul",
    'quote" back\\slash\nnewline',
    [],
    {},
    [1, "a", None, [2, [3, {}]]],
    {"nested": {"deep": [{"k": "v"}, 1.25, None]}, "": "empty key", "big": 10**30},
]
"""Values every backend must store and read back exactly."""

BAD_VALUES: list[Any] = [
    {1, 2},
    b"bytes",
    _Opaque(),
    float("nan"),
    float("inf"),
    -float("inf"),
    {1: "int key"},
    {"nested": {"x": float("nan")}},
    [uuid.uuid4()],
    "\ud800",
    object,
    {(1, 2): 3},
]
"""Values every backend must refuse with ``SerializationError``, writing nothing."""

BAD_KEYS: list[Any] = [
    "",
    " ",
    "has space",
    "a*b",
    "*",
    ">",
    "a.>",
    "a..b",
    ".lead",
    "trail.",
    "ünï",
    "tab\t",
    "new\nline",
    "k" * 1025,
    None,
    42,
    b"bytes",
]
"""Keys every backend must refuse with ``InvalidKey``, writing nothing."""

BAD_TTLS: list[Any] = [0, -1, 0.5, 0.999, float("nan"), float("inf"), "10", True, [5]]
"""TTLs every backend must refuse with ``InvalidArgument``, writing nothing."""


def _wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class KeyValueConformance:
    """Cases for :class:`~msstore.protocols.KeyValueStore`. Needs fixture ``kv_factory``."""

    @pytest.fixture
    def make_kv(self, kv_factory: KVFactory) -> Iterator[Callable[..., KeyValueStore]]:
        opened: list[KeyValueStore] = []

        def make(**settings: Any) -> KeyValueStore:
            name = f"conf_{uuid.uuid4().hex[:12]}"
            store = kv_factory(BucketConfig(name=name, **settings))
            opened.append(store)
            return store

        yield make
        for store in opened:
            store.close()

    @pytest.fixture
    def kv(self, make_kv: Callable[..., KeyValueStore]) -> KeyValueStore:
        return make_kv(history=5)

    # Reads and round trips -----------------------------------------------------------------

    def test_missing_key_reads_none(self, kv: KeyValueStore) -> None:
        assert kv.get("never.written") is None
        assert kv.keys() == []

    @pytest.mark.parametrize("value", JSON_VALUES, ids=repr)
    def test_json_value_round_trips(self, kv: KeyValueStore, value: Any) -> None:
        rev = kv.put("v", value)
        entry = kv.get("v")
        assert entry is not None and entry.revision == rev
        got = entry.value
        assert got == value and type(got) is type(value)
        if isinstance(value, float):
            assert math.copysign(1, got) == math.copysign(1, value)

    def test_empty_values_round_trip(self, kv: KeyValueStore) -> None:
        empties: list[Any] = ["", {}, [], 0, False, None]
        for i, value in enumerate(empties):
            kv.put(f"empty.{i}", value)
            entry = kv.get(f"empty.{i}")
            assert entry is not None and entry.operation is Operation.PUT
            assert entry.value == value and type(entry.value) is type(value)

    def test_values_are_copies(self, kv: KeyValueStore) -> None:
        doc = {"list": [1, 2]}
        kv.put("copy", doc)
        doc["list"].append(3)
        first = kv.get("copy")
        assert first is not None
        first.value["list"].append(4)
        again = kv.get("copy")
        assert again is not None and again.value == {"list": [1, 2]}

    def test_entry_fields(self, kv: KeyValueStore) -> None:
        before = time.time()
        rev = kv.put("fields.k", {"a": 1})
        entry = kv.get("fields.k")
        assert entry is not None
        assert (entry.bucket, entry.key, entry.revision) == (kv.name, "fields.k", rev)
        assert entry.operation is Operation.PUT and not entry.is_marker
        assert before - 5 <= entry.created <= time.time() + 5

    def test_one_kib_key(self, kv: KeyValueStore) -> None:
        key = ".".join(["k" * 63] * 16)  # 1,023 characters
        key += "x"
        assert len(key) == 1024
        kv.put(key, 1)
        entry = kv.get(key)
        assert entry is not None and entry.value == 1

    # Revisions -------------------------------------------------------------------------------

    def test_revisions_increase_on_every_write(self, kv: KeyValueStore) -> None:
        revs = [kv.put("r", i) for i in range(5)]
        revs.append(kv.put("other", 0))
        revs.append(kv.delete("r"))
        revs.append(kv.put("r", 9))
        assert revs == sorted(revs) and len(set(revs)) == len(revs)

    def test_revision_never_reused_after_delete(self, kv: KeyValueStore) -> None:
        first = kv.put("reuse", 1)
        deleted = kv.delete("reuse")
        again = kv.put("reuse", 2)
        assert first < deleted < again
        purged = kv.purge("reuse") if Capability.PURGE in kv.capabilities else again
        assert kv.put("reuse", 3) > purged

    def test_get_by_revision(self, kv: KeyValueStore) -> None:
        r1 = kv.put("byrev", "one")
        r2 = kv.put("byrev", "two")
        if Capability.HISTORY not in kv.capabilities:
            with pytest.raises(Unsupported):
                kv.get("byrev", revision=r1)
            return
        old = kv.get("byrev", revision=r1)
        assert old is not None and old.value == "one"
        new = kv.get("byrev", revision=r2)
        assert new is not None and new.value == "two"
        assert kv.get("byrev", revision=r2 + 1000) is None

    # Compare and set -------------------------------------------------------------------------

    def test_create_fails_when_present(self, kv: KeyValueStore) -> None:
        if Capability.CAS not in kv.capabilities:
            with pytest.raises(Unsupported):
                kv.create("c", 1)
            return
        rev = kv.create("c", 1)
        with pytest.raises(DuplicateKey):
            kv.create("c", 2)
        entry = kv.get("c")
        assert entry is not None and (entry.value, entry.revision) == (1, rev)

    def test_create_succeeds_after_delete_and_purge(self, kv: KeyValueStore) -> None:
        if Capability.CAS not in kv.capabilities:
            pytest.skip("store does not declare cas (checked by test_create_fails_when_present)")
        kv.create("cd", 1)
        kv.delete("cd")
        kv.create("cd", 2)
        if Capability.PURGE in kv.capabilities:
            kv.purge("cd")
            kv.create("cd", 3)
        entry = kv.get("cd")
        assert entry is not None and entry.value == (
            3 if Capability.PURGE in kv.capabilities else 2
        )

    def test_update_with_current_revision(self, kv: KeyValueStore) -> None:
        if Capability.CAS not in kv.capabilities:
            with pytest.raises(Unsupported):
                kv.update("u", 1, expected_revision=1)
            return
        rev = kv.put("u", 1)
        new = kv.update("u", 2, expected_revision=rev)
        entry = kv.get("u")
        assert new > rev and entry is not None and (entry.value, entry.revision) == (2, new)

    def test_stale_revision_conflicts_and_changes_nothing(self, kv: KeyValueStore) -> None:
        if Capability.CAS not in kv.capabilities:
            pytest.skip("store does not declare cas (checked by test_update_with_current_revision)")
        r1 = kv.put("stale", "a")
        r2 = kv.put("stale", "b")
        with pytest.raises(VersionConflict) as info:
            kv.update("stale", "c", expected_revision=r1)
        assert info.value.retryable
        with pytest.raises(VersionConflict):
            kv.delete("stale", expected_revision=r1)
        entry = kv.get("stale")
        assert entry is not None and (entry.value, entry.revision) == ("b", r2)
        assert kv.put("probe", 0) == r2 + 1  # the refused writes took no revision

    def test_update_of_absent_key_conflicts(self, kv: KeyValueStore) -> None:
        if Capability.CAS not in kv.capabilities:
            pytest.skip("store does not declare cas (checked by test_update_with_current_revision)")
        with pytest.raises(VersionConflict):
            kv.update("absent", 1, expected_revision=1)
        assert kv.get("absent") is None

    def test_cas_delete_with_current_revision(self, kv: KeyValueStore) -> None:
        if Capability.CAS not in kv.capabilities:
            with pytest.raises(Unsupported):
                kv.delete("cas.del", expected_revision=1)
            return
        rev = kv.put("cas.del", 1)
        kv.delete("cas.del", expected_revision=rev)
        assert kv.get("cas.del") is None

    def test_concurrent_cas_increments_are_exact(self, kv: KeyValueStore) -> None:
        if Capability.CAS not in kv.capabilities:
            pytest.skip("store does not declare cas (checked by test_update_with_current_revision)")
        kv.put("counter", 0)
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                for _ in range(200):
                    while True:
                        entry = kv.get("counter")
                        assert entry is not None
                        time.sleep(0)  # let another thread in between read and write
                        try:
                            kv.update("counter", entry.value + 1, expected_revision=entry.revision)
                            break
                        except VersionConflict:
                            continue
            except BaseException as err:  # surfaced below: a thread's failure must fail the test
                errors.append(err)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        entry = kv.get("counter")
        assert entry is not None and entry.value == 1600

    # Delete and purge ------------------------------------------------------------------------

    def test_delete_is_idempotent(self, kv: KeyValueStore) -> None:
        kv.put("d", 1)
        kv.delete("d")
        kv.delete("d")
        kv.delete("never.there")
        assert kv.get("d") is None and kv.get("never.there") is None
        assert kv.keys() == []

    def test_delete_keeps_history_with_marker(self, kv: KeyValueStore) -> None:
        if Capability.HISTORY not in kv.capabilities:
            with pytest.raises(Unsupported):
                kv.history("h")
            return
        kv.put("h", 1)
        kv.put("h", 2)
        kv.delete("h")
        ops = [(e.operation, e.value) for e in kv.history("h")]
        assert ops == [(Operation.PUT, 1), (Operation.PUT, 2), (Operation.DEL, None)]

    def test_purge_drops_history(self, kv: KeyValueStore) -> None:
        if Capability.PURGE not in kv.capabilities:
            with pytest.raises(Unsupported):
                kv.purge("p")
            return
        for i in range(3):
            kv.put("p", i)
        kv.put("p.keep", "other key")
        kv.purge("p")
        assert kv.get("p") is None
        if Capability.HISTORY in kv.capabilities:
            assert [e.operation for e in kv.history("p")] == [Operation.PURGE]
            assert len(kv.history("p.keep")) == 1
        assert kv.keys() == ["p.keep"]

    def test_history_depth_is_bounded(self, make_kv: Callable[..., KeyValueStore]) -> None:
        kv = make_kv(history=3)
        if Capability.HISTORY not in kv.capabilities:
            pytest.skip("store does not declare history (checked by test_delete_keeps_history)")
        for i in range(10):
            kv.put("bounded", i)
        assert [e.value for e in kv.history("bounded")] == [7, 8, 9]
        assert kv.history("nothing.here") == []

    # Listing ---------------------------------------------------------------------------------

    def test_keys_by_prefix(self, kv: KeyValueStore) -> None:
        for key in ["agent.a1.state", "agent.a1.config", "agent.a2.state", "session.s1"]:
            kv.put(key, 1)
        assert kv.keys() == ["agent.a1.config", "agent.a1.state", "agent.a2.state", "session.s1"]
        assert kv.keys(prefix="agent.a1.") == ["agent.a1.config", "agent.a1.state"]
        assert kv.keys(prefix="agent.") == ["agent.a1.config", "agent.a1.state", "agent.a2.state"]
        assert kv.keys(prefix="nope") == []

    def test_keys_by_wildcard(self, kv: KeyValueStore) -> None:
        for key in ["agent.a1.state", "agent.a1.config", "agent.a2.state", "agent.a2.x.y", "a"]:
            kv.put(key, 1)
        assert kv.keys("agent.*.state") == ["agent.a1.state", "agent.a2.state"]
        assert kv.keys("agent.a2.>") == ["agent.a2.state", "agent.a2.x.y"]
        assert kv.keys("*") == ["a"]
        assert kv.keys("agent.a1.state") == ["agent.a1.state"]

    def test_keys_skip_deleted(self, kv: KeyValueStore) -> None:
        kv.put("live", 1)
        kv.put("gone", 1)
        kv.delete("gone")
        assert kv.keys() == ["live"]

    # TTL -------------------------------------------------------------------------------------

    def test_per_key_ttl_expires(self, make_kv: Callable[..., KeyValueStore]) -> None:
        kv = make_kv(history=1)
        if Capability.PER_KEY_TTL not in kv.capabilities:
            with pytest.raises(Unsupported):
                kv.put("ttl", 1, ttl=1)
            assert kv.get("ttl") is None
            return
        kv.put("ttl", "short", ttl=1)
        kv.put("stays", "long")
        assert kv.get("ttl") is not None
        assert _wait_for(lambda: kv.get("ttl") is None, timeout=5)
        assert kv.keys() == ["stays"]
        assert kv.get("stays") is not None
        if Capability.CAS in kv.capabilities:
            kv.create("ttl", "again")  # an expired key counts as absent
        else:
            kv.put("ttl", "again")
        entry = kv.get("ttl")
        assert entry is not None and entry.value == "again"

    def test_write_without_ttl_clears_key_ttl(self, make_kv: Callable[..., KeyValueStore]) -> None:
        kv = make_kv(history=1)
        if Capability.PER_KEY_TTL not in kv.capabilities:
            pytest.skip("store does not declare per_key_ttl (checked by test_per_key_ttl_expires)")
        kv.put("clear", "with ttl", ttl=1)
        kv.put("clear", "no ttl")
        time.sleep(2.2)
        entry = kv.get("clear")
        assert entry is not None and entry.value == "no ttl"

    def test_bucket_ttl_expires(self, make_kv: Callable[..., KeyValueStore]) -> None:
        kv = make_kv(history=1, ttl=1)
        if Capability.TTL not in kv.capabilities:
            pytest.skip("store does not declare ttl")
        kv.put("aging", 1)
        assert _wait_for(lambda: kv.get("aging") is None, timeout=5)
        assert kv.keys() == []

    # Watch -----------------------------------------------------------------------------------

    def test_watch_sees_current_then_updates_in_order(self, kv: KeyValueStore) -> None:
        if Capability.WATCH not in kv.capabilities:
            with pytest.raises(Unsupported):
                kv.watch()
            return
        kv.put("w.a", 1)
        kv.put("w.b", 1)
        kv.put("other", 1)
        with kv.watch("w.>") as watcher:
            seen = [watcher.next(timeout=5) for _ in range(2)]
            assert [(e.key, e.value) for e in seen if e] == [("w.a", 1), ("w.b", 1)]
            expected = []
            for i in range(20):
                key = "w.a" if i % 2 else "w.b"
                expected.append((key, i, kv.put(key, i)))
            kv.put("other", 2)
            kv.delete("w.a")
            got = [watcher.next(timeout=5) for _ in range(21)]
            assert [(e.key, e.value, e.revision) for e in got[:20] if e] == expected
            last = got[20]
            assert last is not None and (last.key, last.operation) == ("w.a", Operation.DEL)
            assert watcher.next(timeout=0.3) is None

    # Batches ---------------------------------------------------------------------------------

    def test_put_many_and_get_many(self, kv: KeyValueStore) -> None:
        items = {f"batch.{i}": {"i": i} for i in range(50)}
        revs = kv.put_many(items)
        assert len(revs) == 50 and revs == sorted(revs)
        got = kv.get_many([*items, "batch.missing"])
        assert got["batch.missing"] is None
        for i in range(50):
            entry = got[f"batch.{i}"]
            assert entry is not None and entry.value == {"i": i}

    # Bad input: typed errors, nothing written -------------------------------------------------

    @pytest.mark.parametrize("key", BAD_KEYS, ids=lambda k: repr(k)[:20])
    def test_bad_key_is_rejected(self, kv: KeyValueStore, key: Any) -> None:
        with pytest.raises(InvalidKey):
            kv.put(key, 1)
        with pytest.raises(InvalidKey):
            kv.get(key)
        with pytest.raises(InvalidKey):
            kv.put_many([("fine", 1), (key, 2)])
        assert kv.keys() == []

    @pytest.mark.parametrize("value", BAD_VALUES, ids=lambda v: type(v).__name__)
    def test_bad_value_is_rejected(self, kv: KeyValueStore, value: Any) -> None:
        kv.put("keep", "original")
        with pytest.raises(SerializationError):
            kv.put("keep", value)
        with pytest.raises(SerializationError):
            kv.put("new", value)
        with pytest.raises(SerializationError):
            kv.put_many({"fine": 1, "bad": value})
        assert kv.keys() == ["keep"]
        entry = kv.get("keep")
        assert entry is not None and entry.value == "original"

    def test_oversized_value_is_rejected(self, make_kv: Callable[..., KeyValueStore]) -> None:
        kv = make_kv(max_value_bytes=1024)
        kv.put("small", "x" * 1000)
        with pytest.raises(SerializationError):
            kv.put("big", "x" * 1100)
        assert kv.keys() == ["small"]

    @pytest.mark.parametrize("ttl", BAD_TTLS, ids=repr)
    def test_bad_ttl_is_rejected(self, kv: KeyValueStore, ttl: Any) -> None:
        with pytest.raises((InvalidArgument, Unsupported)):
            kv.put("t", 1, ttl=ttl)
        assert kv.get("t") is None

    @pytest.mark.parametrize("revision", [-1, "1", True, 1.0, None])
    def test_bad_revision_is_rejected(self, kv: KeyValueStore, revision: Any) -> None:
        if Capability.CAS not in kv.capabilities:
            pytest.skip("store does not declare cas")
        rev = kv.put("r", 1)
        with pytest.raises(InvalidArgument):
            kv.update("r", 2, expected_revision=revision)
        entry = kv.get("r")
        assert entry is not None and (entry.value, entry.revision) == (1, rev)

    def test_update_at_revision_zero_writes_only_a_key_with_no_entry(
        self, kv: KeyValueStore
    ) -> None:
        if Capability.CAS not in kv.capabilities:
            pytest.skip("store does not declare cas")
        rev = kv.update("z.new", 1, expected_revision=0)
        with pytest.raises(VersionConflict):
            kv.update("z.new", 2, expected_revision=0)  # it has a value now
        kv.delete("z.new")
        with pytest.raises(VersionConflict):
            kv.update("z.new", 3, expected_revision=0)  # a marker counts (create would not)
        assert kv.get("z.new") is None
        assert kv.history("z.new")[0].revision == rev

    def test_a_write_with_its_own_ttl_rolls_up_the_keys_history(self, kv: KeyValueStore) -> None:
        if Capability.PER_KEY_TTL not in kv.capabilities:
            pytest.skip("store does not declare per_key_ttl")
        kv.put("z.ttl", "durable")
        rev = kv.put("z.ttl", "short", ttl=60)
        # When "short" expires, "durable" must not show through as the key's value.
        assert [(e.revision, e.value) for e in kv.history("z.ttl")] == [(rev, "short")]
        entry = kv.get("z.ttl")
        assert entry is not None and entry.ttl == 60.0

    def test_bad_patterns_are_rejected(self, kv: KeyValueStore) -> None:
        for pattern in ["a.>.b", "a*", "", "a..b", "> "]:
            with pytest.raises(InvalidKey):
                kv.keys(pattern)
        with pytest.raises(InvalidKey):
            kv.keys(prefix="bad prefix")


class DataStorageConformance:
    """Cases for :class:`~msstore.protocols.DataStorage`. Needs fixture ``storage_factory``
    (a zero-argument callable returning a fresh, empty store)."""

    @pytest.fixture
    def storage(self, storage_factory: Callable[[], DataStorage]) -> Iterator[DataStorage]:
        store = storage_factory()
        yield store
        store.close()

    def test_missing_key_reads_none(self, storage: DataStorage) -> None:
        assert storage.retrieve("absent") is None
        assert storage.remove("absent") is False

    @pytest.mark.parametrize("value", JSON_VALUES, ids=repr)
    def test_json_value_round_trips(self, storage: DataStorage, value: Any) -> None:
        nul = has_nul(value)
        if nul and Capability.NUL_IN_STRINGS not in storage.capabilities:
            with pytest.raises(SerializationError):
                storage.store("doc", value)
            assert storage.retrieve("doc") is None
            return
        storage.store("doc", value)
        rec = storage.retrieve("doc")
        # Equal and of the same type; the SQL tier may drop the sign of -0.0 (PostgreSQL's
        # numeric has no negative zero), so the sign is checked for KV stores only.
        assert rec is not None and rec.value == value and type(rec.value) is type(value)

    def test_versions_increase(self, storage: DataStorage) -> None:
        assert storage.store("v", 1).version == 1
        assert storage.store("v", 2).version == 2
        assert storage.store("v", 3, version=10).version == 10
        rec = storage.retrieve("v")
        assert rec is not None and (rec.value, rec.version) == (3, 10)

    def test_older_version_never_overwrites(self, storage: DataStorage) -> None:
        storage.store("g", "new", version=5)
        for stale in (5, 4, 1):
            with pytest.raises(VersionConflict):
                storage.store("g", "old", version=stale)
        rec = storage.retrieve("g")
        assert rec is not None and (rec.value, rec.version) == ("new", 5)

    def test_remove_is_idempotent(self, storage: DataStorage) -> None:
        storage.store("r", 1)
        assert storage.remove("r") is True
        assert storage.remove("r") is False
        assert storage.retrieve("r") is None

    def test_a_tombstone_refuses_older_writes_until_a_newer_one(self, storage: DataStorage) -> None:
        storage.store("t.k", "v3", version=3)
        assert storage.remove("t.k", below_version=5) is True  # a tombstone at version 5
        assert storage.remove("t.k", below_version=5) is False  # idempotent
        assert storage.retrieve("t.k") is None
        assert storage.search("t.") == []
        now = time.time()
        late = storage.upsert_many([Record("t.k", "late v4", 4, now)])  # a late flush
        assert (late.written, late.skipped) == (0, 1)
        assert storage.retrieve("t.k") is None
        with pytest.raises(VersionConflict):
            storage.store("t.k", "late", version=5)
        storage.upsert_many([Record("t.k", "v6", 6, now)])
        rec = storage.retrieve("t.k")
        assert rec is not None and (rec.value, rec.version) == ("v6", 6)

    def test_a_delete_never_seen_as_a_row_still_leaves_a_tombstone(
        self, storage: DataStorage
    ) -> None:
        now = time.time()
        written = storage.upsert_many([Record("t.gone", None, 7, now, deleted=True)])
        assert written.written == 1
        assert storage.upsert_many([Record("t.gone", "older", 2, now)]).written == 0
        assert storage.retrieve("t.gone") is None
        assert storage.remove("t.never", below_version=3) is False  # no live row was there
        assert storage.upsert_many([Record("t.never", "older", 2, now)]).written == 0

    def test_a_rows_own_expiry_is_honoured(self, storage: DataStorage) -> None:
        now = time.time()
        storage.upsert_many(
            [
                Record("e.past", "x", 1, now - 10, now - 1),
                Record("e.future", "y", 1, now, now + 600),
            ]
        )
        assert storage.retrieve("e.past") is None
        assert [r.key for r in storage.search("e.")] == ["e.future"]
        rec = storage.retrieve("e.future")
        assert rec is not None and rec.expires_at == pytest.approx(now + 600, abs=1e-3)

    def test_upsert_many_guards_versions_and_collapses_duplicates(
        self, storage: DataStorage
    ) -> None:
        storage.store("a", "stored a5", version=5)
        storage.store("b", "stored b1", version=1)
        now = time.time()
        result = storage.upsert_many(
            [
                Record("a", "stale a3", 3, now),  # older than stored: skipped
                Record("b", "b2", 2, now),
                Record("b", "b4", 4, now),  # duplicate key: the newest wins
                Record("b", "b3", 3, now),
                Record("c", {"new": True}, 1, now),
            ]
        )
        assert (result.written, result.skipped) == (2, 3)
        got = {k: storage.retrieve(k) for k in "abc"}
        assert {k: (r.value, r.version) for k, r in got.items() if r} == {
            "a": ("stored a5", 5),
            "b": ("b4", 4),
            "c": ({"new": True}, 1),
        }

    def test_upsert_many_with_a_bad_row_writes_nothing(self, storage: DataStorage) -> None:
        now = time.time()
        with pytest.raises(SerializationError):
            storage.upsert_many([Record("ok", 1, 1, now), Record("bad", {1, 2}, 1, now)])
        with pytest.raises(InvalidKey):
            storage.upsert_many([Record("ok", 1, 1, now), Record("bad key", 1, 1, now)])
        with pytest.raises(InvalidArgument):
            storage.upsert_many([Record("ok", 1, 1, now), Record("v0", 1, 0, now)])
        assert storage.retrieve("ok") is None

    def test_upsert_many_takes_encoded_values_as_they_are(self, storage: DataStorage) -> None:
        if Capability.ENCODED_VALUES not in storage.capabilities:
            pytest.skip(f"{storage!r} does not declare encoded_values")
        value = {"z": 1, "a": [1.5e300, 2**70, -0.5, "ü"], "m": {"b": None, "t": True}}
        now = time.time()
        result = storage.upsert_many(
            [
                Record("enc.canonical", default_codec.encode_canonical(value), 1, now),
                Record(
                    "enc.bytes",
                    Encoded.canonical_bytes(default_codec.encode_canonical(value).data),
                    1,
                    now,
                ),
                Record("enc.plain", Encoded(default_codec.encode(value), False), 1, now),
            ]
        )
        assert result.written == 3
        for key in ("enc.canonical", "enc.bytes", "enc.plain"):
            rec = storage.retrieve(key)
            assert rec is not None and rec.value == value
            assert [type(x) for x in rec.value["a"]] == [float, int, float, str]
        too_big = Encoded(b'"' + b"x" * default_codec.max_value_bytes + b'"', False, canonical=True)
        with pytest.raises(SerializationError):
            storage.upsert_many([Record("enc.ok", 1, 1, now), Record("enc.big", too_big, 1, now)])
        assert storage.retrieve("enc.ok") is None

    def test_ttl_is_honoured_on_read(self, storage: DataStorage) -> None:
        storage.store("short", 1, ttl=1)
        storage.store("long", 1)
        assert _wait_for(lambda: storage.retrieve("short") is None, timeout=5)
        assert storage.retrieve("long") is not None
        assert [r.key for r in storage.search("")] == ["long"]

    def test_search_by_prefix_containment_and_limit(self, storage: DataStorage) -> None:
        if Capability.SEARCH not in storage.capabilities:
            with pytest.raises(Unsupported):
                storage.search("agent.")
            return
        storage.store("agent.a1", {"kind": "planner", "tags": ["x", "y"], "n": 1})
        storage.store("agent.a2", {"kind": "critic", "tags": ["y"], "n": 2})
        storage.store("agent.a3", {"kind": "planner", "tags": [], "n": 3})
        storage.store("task.t1", {"kind": "planner"})
        assert [r.key for r in storage.search("agent.")] == ["agent.a1", "agent.a2", "agent.a3"]
        found = storage.search(Query(prefix="agent.", where={"kind": "planner"}))
        assert [r.key for r in found] == ["agent.a1", "agent.a3"]
        assert [r.key for r in storage.search(Query(where={"tags": ["y"]}))] == [
            "agent.a1",
            "agent.a2",
        ]
        assert len(storage.search(Query(prefix="agent.", limit=2))) == 2

    def test_text_search_needs_its_capability(self, storage: DataStorage) -> None:
        if Capability.SEARCH_TEXT in storage.capabilities:
            storage.search(Query(text="anything"))
            return
        with pytest.raises(Unsupported):
            storage.search(Query(text="anything"))

    @pytest.mark.parametrize("key", BAD_KEYS, ids=lambda k: repr(k)[:20])
    def test_bad_key_is_rejected(self, storage: DataStorage, key: Any) -> None:
        with pytest.raises(InvalidKey):
            storage.store(key, 1)
        assert storage.search("") == []

    @pytest.mark.parametrize("value", BAD_VALUES, ids=lambda v: type(v).__name__)
    def test_bad_value_is_rejected(self, storage: DataStorage, value: Any) -> None:
        storage.store("keep", "original")
        with pytest.raises(SerializationError):
            storage.store("keep", value)
        rec = storage.retrieve("keep")
        assert rec is not None and (rec.value, rec.version) == ("original", 1)

    @pytest.mark.parametrize("version", [0, -3, "2", 1.5, True])
    def test_bad_version_is_rejected(self, storage: DataStorage, version: Any) -> None:
        with pytest.raises(InvalidArgument):
            storage.store("k", 1, version=version)
        assert storage.retrieve("k") is None


class VectorIndexConformance:
    """Cases for :class:`~msstore.protocols.VectorIndex`. Needs fixture ``vector_factory``
    (``make(dim=, metric=) -> VectorIndex``). An index whose ``exact`` attribute is False (an
    ANN index) is held to ``min_recall`` against brute force; an exact one (the default) must
    return brute force's ids and distances."""

    exact = True
    min_recall = 0.9

    @pytest.fixture(params=["cosine", "l2", "ip"])
    def metric(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    def _data(self, n: int, dim: int) -> Any:
        np = pytest.importorskip("numpy", reason="vector conformance needs numpy")
        rng = np.random.default_rng(7)
        centers = rng.normal(size=(8, dim))
        return (centers[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)

    @staticmethod
    def _brute(data: Any, q: Any, metric: str) -> Any:
        import numpy as np  # noqa: PLC0415

        if metric == "ip":
            return -(data @ q)
        if metric == "l2":
            return np.sqrt(((data - q) ** 2).sum(axis=1))
        return 1 - (data @ q) / (np.linalg.norm(data, axis=1) * np.linalg.norm(q))

    def test_search_matches_brute_force(
        self, vector_factory: Callable[..., VectorIndex], metric: str
    ) -> None:
        import numpy as np  # noqa: PLC0415

        data = self._data(500, 16)
        index = vector_factory(dim=16, metric=metric)
        ids = [f"v{i}" for i in range(500)]
        index.add(ids, data, [{"i": i, "even": i % 2 == 0} for i in range(500)])
        assert index.count() == 500
        exact = getattr(index, "exact", self.exact)
        recalls = []
        for q in data[:20] + 0.01:
            hits = index.search(q, k=10)
            truth = np.argsort(self._brute(data, q, metric), kind="stable")[:10]
            if exact:
                assert [h.id for h in hits] == [ids[i] for i in truth]
                assert [h.distance for h in hits] == pytest.approx(
                    [float(self._brute(data, q, metric)[i]) for i in truth], rel=1e-4, abs=1e-4
                )
            recalls.append(len({h.id for h in hits} & {ids[i] for i in truth}) / 10)
        assert sum(recalls) / len(recalls) >= (1.0 if exact else self.min_recall)

    def test_filter_returns_k_matching_rows(
        self, vector_factory: Callable[..., VectorIndex]
    ) -> None:
        data = self._data(300, 8)
        index = vector_factory(dim=8, metric="l2")
        index.add([f"v{i}" for i in range(300)], data, [{"bucket": i % 10} for i in range(300)])
        hits = index.search(data[0], k=10, where={"bucket": 3})
        assert len(hits) == 10 and all(h.metadata["bucket"] == 3 for h in hits)

    def test_replace_and_remove(self, vector_factory: Callable[..., VectorIndex]) -> None:
        index = vector_factory(dim=3, metric="l2")
        index.add(["a", "b"], [[0, 0, 0], [5, 5, 5]])
        index.add(["a"], [[9, 9, 9]], [{"v": 2}])
        assert index.count() == 2
        hits = index.search([9, 9, 9], k=1)
        assert hits[0].id == "a" and hits[0].metadata == {"v": 2}
        assert index.remove(["a", "missing"]) == 1
        assert [h.id for h in index.search([9, 9, 9], k=5)] == ["b"]

    def test_wrong_dimension_is_rejected(self, vector_factory: Callable[..., VectorIndex]) -> None:
        index = vector_factory(dim=4, metric="cosine")
        with pytest.raises(InvalidArgument):
            index.add(["x"], [[1, 2, 3]])
        with pytest.raises(InvalidArgument):
            index.add(["x", "y"], [[1, 2, 3, 4]])
        with pytest.raises(InvalidArgument):
            index.add(["x"], [[1, 2, float("nan"), 4]])
        index.add(["ok"], [[1, 2, 3, 4]])
        with pytest.raises(InvalidArgument):
            index.search([1, 2, 3], k=1)
        with pytest.raises(InvalidArgument):
            index.search([1, 2, 3, 4], k=0)
        assert index.count() == 1
