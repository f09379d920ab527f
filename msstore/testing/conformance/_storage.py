"""The cases every :class:`~msstore.protocols.DataStorage` passes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from msstore.capabilities import Capability
from msstore.codec import Encoded, default_codec, has_nul
from msstore.errors import (
    InvalidArgument,
    InvalidKey,
    SerializationError,
    Unsupported,
    VersionConflict,
)
from msstore.protocols import DataStorage
from msstore.records import Query, Record
from msstore.testing._waiting import eventually

from ._closing import check_closing
from ._values import BAD_KEYS, BAD_VALUES, JSON_VALUES

__all__ = ["DataStorageConformance"]


class DataStorageConformance:
    """Cases for :class:`~msstore.protocols.DataStorage`. Needs fixture ``storage_factory``
    (a zero-argument callable returning a fresh, empty store)."""

    @pytest.fixture
    def storage(self, storage_factory: Callable[[], DataStorage]) -> Iterator[DataStorage]:
        """Fixture: a fresh table store from ``storage_factory``, closed after the case."""
        store = storage_factory()
        yield store
        store.close()

    def test_a_store_is_a_context_manager_and_refuses_work_once_closed(
        self, storage_factory: Callable[[], DataStorage]
    ) -> None:
        check_closing(storage_factory, lambda s: s.retrieve("k"))

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
        eventually(lambda: storage.retrieve("short") is None, timeout=30, what="the TTL")
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
