"""What a backend can do, declared up front and checked both ways by the conformance suite."""

from __future__ import annotations

import enum
from collections.abc import Set

from msstore.errors import Unsupported

__all__ = ["Capability", "require"]


class Capability(enum.Enum):
    """One thing a backend may or may not support."""

    TTL = "ttl"  # bucket-wide max age
    PER_KEY_TTL = "per_key_ttl"  # put(..., ttl=...)
    HISTORY = "history"  # history(key) and get(key, revision=...)
    WATCH = "watch"
    CAS = "cas"  # create / update(expected_revision) / delete(expected_revision)
    PURGE = "purge"
    BATCH = "batch"  # put_many / get_many in one round trip
    SEARCH = "search"  # DataStorage.search by prefix and JSON containment
    SEARCH_TEXT = "search_text"  # Query.text: full-text or semantic search
    TRANSACTIONS = "transactions"
    VECTOR_FILTER = "vector_filter"  # metadata filters on vector search
    NUL_IN_STRINGS = "nul_in_strings"  # strings may hold U+0000 (PostgreSQL JSONB cannot)
    # A KV's writes, or a table store's upsert_many, take codec.Encoded values as they are (the
    # hybrid manager encodes a write once and hands the same bytes to every tier).
    ENCODED_VALUES = "encoded_values"


def require(capabilities: Set[Capability], capability: Capability, *, backend: str) -> None:
    """Raise :class:`Unsupported` unless ``capability`` is among ``capabilities``."""
    if capability not in capabilities:
        raise Unsupported(
            f"{backend} does not support {capability.value}",
            capability=capability.value,
            hint="check store.capabilities before relying on it",
        )
