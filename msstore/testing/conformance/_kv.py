"""The cases every :class:`~msstore.protocols.KeyValueStore` passes."""

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
from msstore.errors import (
    DuplicateKey,
    InvalidArgument,
    InvalidKey,
    SerializationError,
    Unsupported,
    VersionConflict,
)
from msstore.protocols import ChangeFeed, KeyValueStore
from msstore.records import Operation
from msstore.testing._waiting import eventually

from ._closing import check_closing
from ._values import BAD_KEYS, BAD_TTLS, BAD_VALUES, JSON_VALUES

KVFactory = Callable[[BucketConfig], KeyValueStore]


__all__ = ["KeyValueConformance"]


class KeyValueConformance:
    """Cases for :class:`~msstore.protocols.KeyValueStore`. Needs fixture ``kv_factory``."""

    @pytest.fixture
    def make_kv(self, kv_factory: KVFactory) -> Iterator[Callable[..., KeyValueStore]]:
        """Fixture: a function making fresh buckets from ``kv_factory``
        (``make_kv(history=5, ...)``: BucketConfig settings), each closed after the case."""
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
        """Fixture: a fresh bucket keeping 5 revisions per key."""
        return make_kv(history=5)

    def test_a_bucket_is_a_context_manager_and_refuses_work_once_closed(
        self, make_kv: Callable[..., KeyValueStore]
    ) -> None:
        check_closing(lambda: make_kv(history=1), lambda kv: kv.get("k"))

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
        eventually(lambda: kv.get("ttl") is None, timeout=30, what="the key's TTL")
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
        kv.put("canary", "with ttl", ttl=1)  # written after: it expires after the first TTL
        kv.put("clear", "no ttl")
        eventually(lambda: kv.get("canary") is None, timeout=30, what="the canary's 1 s TTL")
        entry = kv.get("clear")
        assert entry is not None and entry.value == "no ttl"

    def test_bucket_ttl_expires(self, make_kv: Callable[..., KeyValueStore]) -> None:
        kv = make_kv(history=1, ttl=1)
        if Capability.TTL not in kv.capabilities:
            pytest.skip("store does not declare ttl")
        kv.put("aging", 1)
        eventually(lambda: kv.get("aging") is None, timeout=30, what="the bucket TTL")
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

    def test_latest_many_shows_markers_that_get_many_hides(self, kv: KeyValueStore) -> None:
        if not isinstance(kv, ChangeFeed):
            pytest.skip(f"{type(kv).__name__} is not a ChangeFeed")
        live, gone = kv.put("lm.live", 1), kv.put("lm.gone", 2)
        marker = kv.delete("lm.gone")
        got = kv.latest_many(["lm.live", "lm.gone", "lm.never"])
        assert got["lm.never"] is None and kv.get_many(["lm.gone"])["lm.gone"] is None
        assert (got["lm.live"].revision, got["lm.live"].value) == (live, 1)  # type: ignore[union-attr]
        dead = got["lm.gone"]
        assert dead is not None and (dead.revision, dead.operation) == (marker, Operation.DEL)
        assert gone < marker and got == {k: kv.latest(k) for k in got}

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
