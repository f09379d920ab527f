"""Knowledge facts: the records, their checks, and the :class:`FactStore` seam.

A fact says ``entity_type/entity_id`` ``predicate`` ``value`` (a ``knowledge.facts`` row),
with a confidence, a validity window and the agent it came from. Its ``text`` is
what gets embedded and full-text indexed (by default ``"<entity_type> <entity_id> <predicate>
<value>"``); ``content_hash`` (SHA-256 of that text) lets a store reuse a vector it already has
for the same text, model and version instead of embedding it again.

A fact may carry a ``key``: adding a fact with a key that is already stored replaces that fact
(version-guarded like every msstore table row). Facts without a key accumulate.
"""

from __future__ import annotations

import datetime
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from msstore import keys as keygrammar
from msstore.codec import default_codec
from msstore.errors import InvalidArgument, StaleVectors, VersionConflict
from msstore.protocols import Store
from msstore.spi import (
    StoreBase,
    as_matrix,
    check_int,
    check_k,
    check_many,
    check_mapping,
    check_version,
    contains,
)

__all__ = [
    "Fact",
    "FactBatch",
    "FactFilter",
    "FactHit",
    "FactStore",
    "FactStoreBase",
    "StaleVectors",
    "check_fact",
    "content_hash",
    "epoch",
    "next_version",
    "object_type",
    "vectors_gone",
]


def epoch(when: float | datetime.datetime | None, *, what: str) -> float | None:
    """Seconds since the epoch from a number or an aware datetime (naive ones are refused)."""
    if when is None:
        return None
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            raise InvalidArgument(f"{what} must be timezone-aware, got naive {when!r}")
        return when.timestamp()
    if isinstance(when, (int, float)) and not isinstance(when, bool) and math.isfinite(when):
        return float(when)
    raise InvalidArgument(f"{what} must be seconds since the epoch or a datetime, got {when!r}")


def object_type(value: Any) -> str:
    """The JSON type of a fact's value (the object_type column)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, (list, tuple)) else "object"


def content_hash(text: str) -> str:
    """The SHA-256 (hex) of ``text``: the key under which a text's vector is stored and reused."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@attrs.frozen(kw_only=True)
class Fact:
    """One fact. ``fact_id``, ``created_at`` and ``version`` are set by the store."""

    entity_type: str
    entity_id: str
    predicate: str
    value: Any
    confidence: float | None = None
    valid_from: float | None = None  # None: from the moment it is added
    valid_until: float | None = None  # None: open-ended
    source_agent: str | None = None
    text: str | None = None
    evidence: Mapping[str, Any] = attrs.field(factory=dict)
    key: str | None = None
    fact_id: str | None = None
    created_at: float | None = None
    version: int | None = None

    @property
    def content(self) -> str:
        """The text that is embedded and searched."""
        if self.text is not None:
            return self.text
        value = self.value if isinstance(self.value, str) else default_codec.encode(self.value)
        shown = value.decode() if isinstance(value, bytes) else value
        return f"{self.entity_type} {self.entity_id} {self.predicate} {shown}"

    def valid_at(self, when: float) -> bool:
        """True if the fact holds at ``when`` (Unix seconds): from ``valid_from`` (inclusive) until
        ``valid_until`` (exclusive)."""
        start = self.valid_from if self.valid_from is not None else float("-inf")
        return start <= when and (self.valid_until is None or when < self.valid_until)


def _text_field(value: object, name: str, limit: int) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > limit or "\x00" in value:
        raise InvalidArgument(f"{name} must be a non-empty string of at most {limit} characters")


def check_fact(fact: Fact, *, now: float) -> Fact:
    """Validate ``fact`` (typed errors, nothing written) and fill ``valid_from``."""
    if not isinstance(fact, Fact):
        hint = "add_many([...]) stores several facts" if isinstance(fact, (list, tuple)) else None
        raise InvalidArgument(f"expected a Fact, got {type(fact).__name__}", hint=hint)
    _text_field(fact.entity_type, "entity_type", 100)
    _text_field(fact.entity_id, "entity_id", 255)
    _text_field(fact.predicate, "predicate", 255)
    default_codec.encode(fact.value)  # SerializationError for what JSON cannot hold
    default_codec.encode(dict(check_mapping(fact.evidence, field="evidence")))
    if fact.confidence is not None and (
        not isinstance(fact.confidence, (int, float))
        or isinstance(fact.confidence, bool)
        or not 0.0 <= fact.confidence <= 1.0
    ):
        raise InvalidArgument(f"confidence must be from 0.0 to 1.0, got {fact.confidence!r}")
    valid_from = epoch(fact.valid_from, what="valid_from")
    valid_until = epoch(fact.valid_until, what="valid_until")
    if valid_from is None:
        valid_from = now
    if valid_until is not None and valid_until <= valid_from:
        raise InvalidArgument("valid_until must be later than valid_from")
    if fact.source_agent is not None:
        _text_field(fact.source_agent, "source_agent", 255)
    if fact.text is not None:
        _text_field(fact.text, "text", 100_000)
    if fact.key is not None:
        keygrammar.check_key(fact.key)
    if fact.version is not None:
        check_version(fact.version)
    confidence = None if fact.confidence is None else round(float(fact.confidence), 2)
    # Two decimals: the DECIMAL(3,2) column's, so every store keeps the same number.
    return attrs.evolve(fact, valid_from=valid_from, valid_until=valid_until, confidence=confidence)


def next_version(fact: Fact, current: int | None, *, skip_stale: bool) -> int | None:
    """The version ``fact`` is stored at, given the ``current`` version of its key (``None``:
    not stored): its own if it has one and it is newer, else the next. An older or equal
    version raises ``VersionConflict``, or with ``skip_stale`` gives ``None`` (left out)."""
    if current is None:
        return fact.version or 1
    if fact.version is None:
        return current + 1
    if fact.version > current:
        return fact.version
    if skip_stale:
        return None
    raise VersionConflict(
        f"fact {fact.key!r} is stored at version {current}; version {fact.version} is not newer",
        key=fact.key,
        expected=fact.version,
        current=current,
    )


def vectors_gone(hashes: Sequence[str]) -> StaleVectors:
    """The error for stored vectors an insert meant to reuse that were deleted meanwhile."""
    gone = sorted(set(hashes))
    return StaleVectors(
        f"{len(gone)} stored vectors went away while adding facts",
        hashes=gone,
        hint="embed those texts again (KnowledgeBase.add_many does)",
    )


def _valid_at(when: float | datetime.datetime | None) -> float | None:
    return epoch(when, what="valid_at")


@attrs.frozen(kw_only=True)
class FactFilter:
    """What a search keeps: every given field must hold.

    ``valid_at`` keeps facts valid at that moment (``valid_from <= t < valid_until``);
    ``where`` keeps facts whose value contains it (JSON containment); ``key_prefix`` keeps
    keyed facts whose key starts with it.
    """

    entity_type: str | None = None
    entity_id: str | None = None
    predicate: str | None = None
    min_confidence: float | None = None
    valid_at: float | None = attrs.field(default=None, converter=_valid_at)
    source_agent: str | None = None
    key_prefix: str | None = None
    where: Mapping[str, Any] | None = None

    def __attrs_post_init__(self) -> None:
        if self.min_confidence is not None and not (
            isinstance(self.min_confidence, (int, float)) and 0.0 <= self.min_confidence <= 1.0
        ):
            raise InvalidArgument(f"min_confidence must be from 0 to 1, got {self.min_confidence}")
        if self.key_prefix is not None:
            keygrammar.check_prefix(self.key_prefix)
        if self.where is not None and not isinstance(self.where, Mapping):
            raise InvalidArgument("where must be a mapping (JSON containment on the value)")

    def matches(self, fact: Fact) -> bool:
        """The filter in Python (the memory store's; SQL stores translate it)."""
        return (
            (self.entity_type is None or fact.entity_type == self.entity_type)
            and (self.entity_id is None or fact.entity_id == self.entity_id)
            and (self.predicate is None or fact.predicate == self.predicate)
            and (
                self.min_confidence is None
                or (fact.confidence is not None and fact.confidence >= self.min_confidence)
            )
            and (self.valid_at is None or fact.valid_at(self.valid_at))
            and (self.source_agent is None or fact.source_agent == self.source_agent)
            and (
                self.key_prefix is None
                or (fact.key is not None and fact.key.startswith(self.key_prefix))
            )
            and (self.where is None or contains(fact.value, dict(self.where)))
        )


@attrs.frozen(kw_only=True)
class FactHit:
    """A search result. ``score`` orders results (higher is better): the fused RRF score in
    hybrid mode, ``1 - distance`` in vector mode, the text rank in text mode. ``distance``,
    ``vector_rank`` and ``text_rank`` (from 1) say what each retriever saw, None when absent."""

    fact: Fact
    score: float
    distance: float | None = None
    vector_rank: int | None = None
    text_rank: int | None = None


@runtime_checkable
class FactStore(Store, Protocol):
    """Where a :class:`~msstore.knowledge.KnowledgeBase` keeps facts and their vectors.

    Implementations: ``MemoryFactStore`` (exact, in process) and ``PostgresFactStore``
    (knowledge.facts + knowledge.embeddings with pgvector). Rankings return ``(fact, value)``
    pairs best first: a distance (lower is closer) for vectors, a relevance (higher is better)
    for text.
    """

    @property
    def dim(self) -> int:
        """The embeddings' dimension."""

    def known_hashes(self, hashes: Sequence[str], *, model: str, version: str) -> set[str]:
        """Which content hashes already have a vector of ``model``/``version``."""
        ...

    def insert(
        self,
        facts: Sequence[Fact],
        vectors: Mapping[str, Sequence[float]],
        *,
        model: str,
        version: str,
        skip_stale: bool = False,
    ) -> list[Fact]:
        """Store ``facts`` (validated) in one transaction, all or nothing; return them as stored.

        A fact's vector is ``vectors[content_hash(fact.content)]`` or, when absent there, the
        stored vector for that hash (``StaleVectors`` if it is gone). Keyed facts replace the
        stored fact of their key if their version is newer, else raise ``VersionConflict`` (or,
        with ``skip_stale``, are left out of the result); without a version they take the next.
        """
        ...

    def vector_search(
        self, vector: Sequence[float], k: int, flt: FactFilter, *, model: str, version: str
    ) -> list[tuple[Fact, float]]:
        """The ``k`` facts (of ``flt``) nearest to ``vector``, with cosine distances."""

    def text_search(
        self, text: str, k: int, flt: FactFilter, *, model: str, version: str
    ) -> list[tuple[Fact, float]]:
        """The ``k`` facts (of ``flt``) whose text matches ``text`` best, with relevances."""

    def get(self, fact_id: str) -> Fact | None:
        """The fact with ``fact_id``, or ``None``."""

    def get_key(self, key: str) -> Fact | None:
        """The fact stored under ``key``, or ``None``."""

    def scan(self, flt: FactFilter, limit: int) -> list[Fact]:
        """Keyed facts matching ``flt``, ordered by key (byte order), at most ``limit``."""
        ...

    def remove(self, fact_ids: Sequence[str]) -> int:
        """Delete the facts of ``fact_ids`` (ids that name none are skipped); how many."""

    def remove_key(self, key: str, *, below_version: int | None = None) -> bool:
        """Delete the fact of ``key`` (only if its version is below ``below_version``)."""

    def count(self) -> int:
        """How many facts the store holds."""


@attrs.frozen(kw_only=True)
class FactBatch:
    """An insert on its way into a store: the facts (checked), the new vectors by content
    hash (float32 rows of the store's dimension), the embedding model and version, and
    whether facts older than their stored key are left out (``skip_stale``)."""

    facts: tuple[Fact, ...]
    vectors: Mapping[str, Any]
    model: str
    version: str
    skip_stale: bool = False


def _vector_rows(vectors: Mapping[str, Sequence[float]], dim: int) -> dict[str, Any]:
    if not isinstance(vectors, Mapping):
        raise InvalidArgument(f"vectors must map content hashes to vectors, got {vectors!r}")
    hashes = list(vectors)
    if not hashes:
        return {}
    matrix = as_matrix([vectors[h] for h in hashes], dim=dim, rows=len(hashes))
    return {h: matrix[i] for i, h in enumerate(hashes)}


class FactStoreBase(StoreBase, FactStore):
    """Everything a fact store does but storing facts: the public calls of
    :class:`FactStore`, their checks and the lifecycle, written once.

    **Implementing a store.** Subclass this, set ``_dim`` and supply, each atomic:
    :meth:`_known_hashes`, :meth:`_insert`, :meth:`_vector_search` (a float32 query of ``dim``
    values), :meth:`_text_search`, :meth:`_get`, :meth:`_get_key`, :meth:`_scan`,
    :meth:`_remove`, :meth:`_remove_key`, :meth:`_count`, and :meth:`_release`. A keyed fact's
    version is :func:`next_version`; the conformance suite
    (:class:`~msstore.testing.conformance.FactStoreConformance`) checks the rest.
    """

    _dim: int

    @property
    def dim(self) -> int:
        return self._dim

    def known_hashes(self, hashes: Sequence[str], *, model: str, version: str) -> set[str]:
        """Which content hashes already have a vector of ``model``/``version``."""
        self._check_open()
        return self._known_hashes(list(hashes), model, version)

    def insert(
        self,
        facts: Sequence[Fact],
        vectors: Mapping[str, Sequence[float]],
        *,
        model: str,
        version: str,
        skip_stale: bool = False,
    ) -> list[Fact]:
        """See :meth:`FactStore.insert`."""
        batch = FactBatch(
            facts=tuple(facts),
            vectors=_vector_rows(vectors, self._dim),
            model=model,
            version=version,
            skip_stale=skip_stale,
        )
        self._check_open()
        return self._insert(batch)

    def vector_search(
        self, vector: Sequence[float], k: int, flt: FactFilter, *, model: str, version: str
    ) -> list[tuple[Fact, float]]:
        check_k(k)
        query = as_matrix(vector, dim=self._dim, rows=1)[0]
        self._check_open()
        return self._vector_search(query, k, flt, model, version)

    def text_search(
        self, text: str, k: int, flt: FactFilter, *, model: str, version: str
    ) -> list[tuple[Fact, float]]:
        check_k(k)
        if type(text) is not str:
            raise InvalidArgument(f"text must be a str, got {text!r}")
        self._check_open()
        return self._text_search(text, k, flt, model, version)

    def get(self, fact_id: str) -> Fact | None:
        self._check_open()
        return self._get(str(fact_id))

    def get_key(self, key: str) -> Fact | None:
        self._check_open()
        return self._get_key(key)

    def scan(self, flt: FactFilter, limit: int) -> list[Fact]:
        """Keyed facts matching ``flt``, ordered by key (byte order), at most ``limit``."""
        check_int(limit, field="limit", minimum=1)
        self._check_open()
        return self._scan(flt, limit)

    def remove(self, fact_ids: Sequence[str]) -> int:
        ids = check_many(fact_ids, field="fact_ids", of="fact ids")
        if not all(type(f) is str and f for f in ids):
            raise InvalidArgument(f"fact_ids must be non-empty strings, got {ids!r}"[:200])
        self._check_open()
        return self._remove(list(dict.fromkeys(ids)))

    def remove_key(self, key: str, *, below_version: int | None = None) -> bool:
        if below_version is not None:
            check_version(below_version)
        self._check_open()
        return self._remove_key(key, below_version)

    def count(self) -> int:
        self._check_open()
        return self._count()

    # The primitives --------------------------------------------------------------------------

    def _known_hashes(self, hashes: list[str], model: str, version: str) -> set[str]:
        raise NotImplementedError

    def _insert(self, batch: FactBatch) -> list[Fact]:
        """Store ``batch`` in one transaction (see :meth:`FactStore.insert`)."""
        raise NotImplementedError

    def _vector_search(
        self, query: Any, k: int, flt: FactFilter, model: str, version: str
    ) -> list[tuple[Fact, float]]:
        raise NotImplementedError

    def _text_search(
        self, text: str, k: int, flt: FactFilter, model: str, version: str
    ) -> list[tuple[Fact, float]]:
        raise NotImplementedError

    def _get(self, fact_id: str) -> Fact | None:
        raise NotImplementedError

    def _get_key(self, key: str) -> Fact | None:
        raise NotImplementedError

    def _scan(self, flt: FactFilter, limit: int) -> list[Fact]:
        raise NotImplementedError

    def _remove(self, fact_ids: list[str]) -> int:
        raise NotImplementedError

    def _remove_key(self, key: str, below_version: int | None) -> bool:
        raise NotImplementedError

    def _count(self) -> int:
        raise NotImplementedError
