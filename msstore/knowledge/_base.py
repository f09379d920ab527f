"""The knowledge base: facts embedded once, searched by meaning, by words, or both.

:class:`KnowledgeBase` composes a :class:`~msstore.knowledge.FactStore` (memory or PostgreSQL +
pgvector) with an :class:`~msstore.protocols.Embedder`:

* ``add`` / ``add_many`` validate facts, embed only texts the store has no vector for (same
  content hash, model and version), and store everything in one transaction.
* ``search(text, mode=...)``: ``"vector"`` (nearest embeddings), ``"text"`` (full-text: any
  query word matches, more and rarer matches rank higher) or ``"hybrid"`` (default): the top
  ``candidates`` of each, fused by reciprocal rank fusion (:mod:`msstore.knowledge._fusion`,
  ``rrf_k`` 60,
  ``weights`` (vector, text) = (1, 1)). Filters: entity type and id, predicate, minimum
  confidence, valid at a time, source agent, value containment.

:class:`KnowledgeStorage` is the KNOWLEDGE_BASE route's ``DataStorage``: keyed facts whose
``search(Query(text=...))`` is the hybrid search.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from msstore._internal.ttl import check_ttl
from msstore.capabilities import Capability
from msstore.errors import InvalidArgument
from msstore.protocols import DataStorage, Embedder
from msstore.records import Query, Record, UpsertResult
from msstore.spi import (
    StoreBase,
    as_matrix,
    check_k,
    check_many,
    check_query,
    check_version,
    newest_per_key,
)

from ._facts import Fact, FactFilter, FactHit, FactStore, StaleVectors, check_fact, content_hash
from ._fusion import RRF_K, reciprocal_rank_fusion

__all__ = ["MODES", "KnowledgeBase", "KnowledgeStorage"]

MODES: Final = ("hybrid", "vector", "text")
"""The search modes: hybrid (default), vector, text."""


class KnowledgeBase(StoreBase):
    """Facts with embeddings over a :class:`FactStore` (see the module docstring).

    ``candidates`` is how many results each retriever contributes to a hybrid search (at least
    ``k``); ``weights`` weigh the vector and the text ranking in the fusion.
    """

    def __init__(
        self,
        store: FactStore,
        embedder: Embedder,
        *,
        rrf_k: int = RRF_K,
        candidates: int = 50,
        weights: tuple[float, float] = (1.0, 1.0),
        clock: Callable[[], float] = time.time,
        owns_store: bool = True,
    ) -> None:
        if embedder.dim != store.dim:
            raise InvalidArgument(
                f"the embedder makes {embedder.dim}-dimensional vectors; the store holds "
                f"{store.dim}",
                hint="use an embedder of the store's dimension; on PostgreSQL the dimension is "
                "the one the database was migrated with (`msstore migrate up --embedding-dim "
                f"{embedder.dim}`, or Migrator(dsn, embedding_dim={embedder.dim}), on a new "
                "database)",
            )
        reciprocal_rank_fusion([], k=rrf_k, weights=[])  # validates rrf_k
        if type(candidates) is not int or candidates < 1:
            raise InvalidArgument(f"candidates must be an int >= 1, got {candidates!r}")
        if len(weights) != 2 or any(not isinstance(w, (int, float)) or w < 0 for w in weights):
            raise InvalidArgument("weights are two non-negative numbers: (vector, text)")
        self._store = store
        self._embedder = embedder
        self._rrf_k = rrf_k
        self._candidates = candidates
        self._weights = (float(weights[0]), float(weights[1]))
        self._clock = clock
        self._owns_store = owns_store
        self._lock = threading.Lock()
        self._stats = {"facts_added": 0, "texts_embedded": 0, "vectors_reused": 0, "searches": 0}

    def __repr__(self) -> str:
        return f"KnowledgeBase({self._store!r}, {self._embedder!r})"

    @property
    def store(self) -> FactStore:
        """The fact store underneath."""
        return self._store

    @property
    def embedder(self) -> Embedder:
        """The embedder that makes the facts' vectors."""
        return self._embedder

    def _embed(self, texts: Sequence[str]) -> Any:
        vectors = self._embedder.embed(list(texts))
        return as_matrix(vectors, dim=self._embedder.dim, rows=len(texts))

    # writes ----------------------------------------------------------------------------------

    def add(self, fact: Fact) -> Fact:
        """Store one fact; returns it with ``fact_id``, ``created_at`` and ``version`` set."""
        return self.add_many([fact])[0]

    def add_many(self, facts: Iterable[Fact], *, skip_stale: bool = False) -> list[Fact]:
        """Store facts in one transaction, embedding each distinct new text once.

        Keyed facts replace their key's stored fact when newer; an older or equal version
        raises ``VersionConflict`` (nothing is stored) or, with ``skip_stale``, is left out.
        """
        now = self._clock()
        checked = [check_fact(f, now=now) for f in check_many(facts, field="facts", of="Facts")]
        keys = [f.key for f in checked if f.key is not None]
        if len(set(keys)) != len(keys):
            raise InvalidArgument("a batch holds each key at most once")
        if not checked:
            return []
        model, version = self._embedder.model, self._embedder.version
        texts = {content_hash(text): text for text in (f.content for f in checked)}
        hashes = list(texts)
        known = self._store.known_hashes(hashes, model=model, version=version)
        fresh = [h for h in hashes if h not in known]
        vectors: dict[str, Any] = {}
        if fresh:
            vectors.update(zip(fresh, self._embed([texts[h] for h in fresh]), strict=True))
        try:
            stored = self._store.insert(
                checked, vectors, model=model, version=version, skip_stale=skip_stale
            )
        except StaleVectors as gone:  # deleted between the lookup and the insert: embed them
            lost: list[str] = gone.hashes
            vectors.update(zip(lost, self._embed([texts[h] for h in lost]), strict=True))
            stored = self._store.insert(
                checked, vectors, model=model, version=version, skip_stale=skip_stale
            )
        with self._lock:
            self._stats["facts_added"] += len(stored)
            self._stats["texts_embedded"] += len(vectors)
            self._stats["vectors_reused"] += len(checked) - len(vectors)
        return stored

    def remove(self, fact_id: str) -> bool:
        """Delete the fact of ``fact_id``; ``True`` if there was one."""
        return self._store.remove([fact_id]) > 0

    def remove_key(self, key: str, *, below_version: int | None = None) -> bool:
        """Delete the keyed fact of ``key`` (only below ``below_version`` when given); ``True`` if
        one went."""
        return self._store.remove_key(key, below_version=below_version)

    # reads -----------------------------------------------------------------------------------

    def get(self, fact_id: str) -> Fact | None:
        """The fact of ``fact_id``, ``None`` if there is none."""
        return self._store.get(fact_id)

    def get_key(self, key: str) -> Fact | None:
        """The current fact of ``key``, ``None`` if there is none."""
        return self._store.get_key(key)

    def count(self) -> int:
        """How many facts the store holds."""
        return self._store.count()

    def search(
        self,
        text: str,
        *,
        k: int = 10,
        mode: str = "hybrid",
        filter: FactFilter | None = None,
        **conditions: Any,
    ) -> list[FactHit]:
        """Facts for ``text``, best first (see the module docstring for the modes).

        Filter conditions come as a :class:`FactFilter` or as its fields by keyword:
        ``kb.search("dark mode", entity_type="user", min_confidence=0.8, valid_at=now)``.
        """
        check_k(k)
        if mode not in MODES:
            raise InvalidArgument(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgument("search text must be a non-empty string")
        if filter is not None and conditions:
            raise InvalidArgument("pass a FactFilter or keyword conditions, not both")
        try:
            flt = filter if filter is not None else FactFilter(**conditions)
        except TypeError as err:
            raise InvalidArgument(f"unknown filter condition: {err}") from None
        with self._lock:
            self._stats["searches"] += 1
        model, version = self._embedder.model, self._embedder.version
        want = k if mode != "hybrid" else max(k, self._candidates)
        by_vector: list[tuple[Fact, float]] = []
        by_text: list[tuple[Fact, float]] = []
        if mode in ("vector", "hybrid"):
            query = self._embed([text])[0]
            by_vector = self._store.vector_search(query, want, flt, model=model, version=version)
        if mode in ("text", "hybrid"):
            by_text = self._store.text_search(text, want, flt, model=model, version=version)
        if mode == "vector":
            return [
                FactHit(fact=f, score=1.0 - d, distance=d, vector_rank=i)
                for i, (f, d) in enumerate(by_vector, start=1)
            ]
        if mode == "text":
            return [
                FactHit(fact=f, score=r, text_rank=i) for i, (f, r) in enumerate(by_text, start=1)
            ]
        return self._fuse(by_vector, by_text, k)

    def _fuse(
        self, by_vector: list[tuple[Fact, float]], by_text: list[tuple[Fact, float]], k: int
    ) -> list[FactHit]:
        facts: dict[str, Fact] = {}
        distance: dict[str, float] = {}
        vrank: dict[str, int] = {}
        trank: dict[str, int] = {}
        for i, (fact, d) in enumerate(by_vector, start=1):
            assert fact.fact_id is not None
            facts[fact.fact_id], distance[fact.fact_id], vrank[fact.fact_id] = fact, d, i
        for i, (fact, _) in enumerate(by_text, start=1):
            assert fact.fact_id is not None
            facts.setdefault(fact.fact_id, fact)
            trank[fact.fact_id] = i
        fused = reciprocal_rank_fusion(
            [list(vrank), list(trank)], k=self._rrf_k, weights=self._weights
        )
        return [
            FactHit(
                fact=facts[fid],
                score=score,
                distance=distance.get(fid),
                vector_rank=vrank.get(fid),
                text_rank=trank.get(fid),
            )
            for fid, score in fused[:k]
        ]

    def stats(self) -> dict[str, int]:
        """Counters: ``facts_added``, ``texts_embedded`` (texts sent to the embedder),
        ``vectors_reused`` (facts that got a vector without embedding), ``searches``."""
        with self._lock:
            return dict(self._stats)

    def _release(self) -> None:
        if self._owns_store:
            self._store.close()


def _fact_for_key(key: str, value: Any, **fields: Any) -> Fact:
    """Key ``TYPE.ID.PREDICATE...`` as a fact; shorter keys fill in (``ID`` = ``TYPE``,
    predicate ``value``)."""
    tokens = key.split(".")
    return Fact(
        entity_type=tokens[0],
        entity_id=tokens[1] if len(tokens) > 1 else tokens[0],
        predicate=".".join(tokens[2:]) or "value",
        value=value,
        key=key,
        **fields,
    )


def _starting(moment: float) -> float:
    """A millisecond before ``moment``: timestamps round to microseconds on their way to SQL,
    and a fact must read as valid at the very moment it was stored."""
    return moment - 0.001


class KnowledgeStorage(StoreBase, DataStorage):
    """The KNOWLEDGE_BASE route as ``DataStorage``: one current fact per key.

    A key reads ``entity_type.entity_id.predicate`` (see ``_fact_for_key``); ``store`` replaces
    the key's fact (version-guarded), a ``ttl`` becomes the fact's ``valid_until`` and reads
    honour it. ``search(Query(text=...))`` runs the knowledge base's hybrid search over keyed,
    currently valid facts (``prefix`` and ``where`` filter it) and returns records in relevance
    order; without ``text`` it lists by key like every table store.
    """

    def __init__(self, kb: KnowledgeBase, *, clock: Callable[[], float] = time.time) -> None:
        self._kb = kb
        self._clock = clock

    def __repr__(self) -> str:
        return f"KnowledgeStorage({self._kb!r})"

    @property
    def capabilities(self) -> frozenset[Capability]:
        return frozenset({Capability.SEARCH, Capability.SEARCH_TEXT, Capability.BATCH})

    @staticmethod
    def _record(fact: Fact) -> Record:
        assert fact.key is not None and fact.version is not None
        return Record(fact.key, fact.value, fact.version, fact.created_at or 0.0, fact.valid_until)

    def _live(self, fact: Fact | None) -> Fact | None:
        return fact if fact is not None and fact.valid_at(self._clock()) else None

    def store(
        self, key: str, value: Any, *, version: int | None = None, ttl: float | None = None
    ) -> Record:
        if version is not None:
            check_version(version)
        seconds = check_ttl(ttl)
        now = self._clock()
        fact = _fact_for_key(
            key,
            value,
            version=version,
            valid_from=_starting(now),
            valid_until=None if seconds is None else now + seconds,
        )
        return self._record(self._kb.add(fact))

    def retrieve(self, key: str) -> Record | None:
        fact = self._live(self._kb.get_key(key))
        return None if fact is None else self._record(fact)

    def remove(self, key: str, *, below_version: int | None = None) -> bool:
        if below_version is not None:
            check_version(below_version)
        return self._kb.remove_key(key, below_version=below_version)

    def search(self, query: Query | str) -> list[Record]:
        query = check_query(query)
        flt = FactFilter(valid_at=self._clock(), key_prefix=query.prefix or "", where=query.where)
        if query.text is None:
            return [self._record(f) for f in self._kb.store.scan(flt, query.limit)]
        hits = self._kb.search(query.text, k=query.limit, filter=flt)
        return [self._record(h.fact) for h in hits]

    def upsert_many(self, records: Iterable[Record]) -> UpsertResult:
        newest, total = newest_per_key(records, lambda value: value)
        now = self._clock()
        facts = [
            _fact_for_key(
                r.key,
                r.value,
                version=r.version,
                valid_from=_starting(min(r.updated_at or now, now)),
                valid_until=r.expires_at,
            )
            for r, _ in newest.values()
            if not r.deleted
        ]
        stored = self._kb.add_many(facts, skip_stale=True) if facts else []
        # Facts keep no tombstones: a delete removes the older fact and is forgotten.
        removed = sum(
            self._kb.remove_key(r.key, below_version=r.version)
            for r, _ in newest.values()
            if r.deleted
        )
        written = len(stored) + removed
        return UpsertResult(written=written, skipped=total - written)

    def _release(self) -> None:
        self._kb.close()
