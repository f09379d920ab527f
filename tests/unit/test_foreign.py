"""``msstore.testing.foreign.foreign_put``: bytes past the codec, as another client writes them."""

from __future__ import annotations

import pytest

from msstore.backends.memory import MemoryKV
from msstore.buckets import BucketConfig
from msstore.errors import InvalidKey, SerializationError, Unsupported
from msstore.testing.foreign import foreign_put


def test_bytes_msstore_would_refuse_are_stored_as_the_next_revision() -> None:
    kv = MemoryKV(BucketConfig(name="foreign", history=3))
    first = kv.put("a.k", 1)
    revision = foreign_put(kv, "a.k", b"\x00not json")
    assert revision == first + 1
    entry = kv.get("a.k")
    assert entry is not None and entry.raw == b"\x00not json"
    with pytest.raises(SerializationError):
        _ = entry.value  # a reader meets the bytes as they are


def test_the_key_is_still_checked() -> None:
    kv = MemoryKV(BucketConfig(name="foreign"))
    with pytest.raises(InvalidKey):
        foreign_put(kv, "bad key", b"1")


def test_an_unknown_store_is_refused_by_name() -> None:
    with pytest.raises(Unsupported, match="foreign_put"):
        foreign_put(object(), "a.k", b"1")  # type: ignore[arg-type]
