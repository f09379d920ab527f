"""``FactStore`` in process: exact cosine search on numpy, BM25 text search, same semantics as
the PostgreSQL store (keys and versions, vector reuse by content hash, filters).

Text matching differs in one documented way: PostgreSQL stems English words ("prefers" matches
"prefer"), this store only lower-cases them and drops a final "s".
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections import Counter
from typing import Any, Final

import attrs

from msstore.codec import default_codec
from msstore.knowledge import (
    Fact,
    FactBatch,
    FactFilter,
    FactStoreBase,
    content_hash,
    next_version,
    vectors_gone,
)
from msstore.spi import check_dim, numpy

__all__ = ["MemoryFactStore"]

_WORD: Final = re.compile(r"\w+", re.UNICODE)
_STOP: Final = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "to",
        "was",
        "were",
        "will",
        "with",
    }
)
BM25_K1: Final = 1.2
BM25_B: Final = 0.75


def _terms(text: str) -> list[str]:
    words = (w.lower() for w in _WORD.findall(text))
    return [w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words if w not in _STOP]


@attrs.frozen
class _Vector:
    model: str
    version: str
    hash: str
    vector: Any  # a float32 row


class MemoryFactStore(FactStoreBase):
    """Facts and vectors in dictionaries; searches compare with every fact (exact)."""

    def __init__(self, *, dim: int, clock: Any = time.time) -> None:
        self._dim = check_dim(dim)
        self._np = numpy()
        self._clock = clock
        self._lock = threading.RLock()
        self._facts: dict[str, Fact] = {}
        self._keys: dict[str, str] = {}
        self._vectors: dict[str, _Vector] = {}  # by fact id
        self._terms: dict[str, Counter[str]] = {}  # by fact id
        self._holders: dict[tuple[str, str, str], set[str]] = {}  # (hash, model, version) -> ids

    def __repr__(self) -> str:
        return f"MemoryFactStore(dim={self._dim}, facts={len(self._facts)})"

    def _stored_vector(self, h: str, model: str, version: str) -> Any:
        holders = self._holders.get((h, model, version))
        return self._vectors[next(iter(holders))].vector if holders else None

    def _known_hashes(self, hashes: list[str], model: str, version: str) -> set[str]:
        with self._lock:
            return {h for h in hashes if self._holders.get((h, model, version))}

    def _insert(self, batch: FactBatch) -> list[Fact]:
        model, version = batch.model, batch.version
        with self._lock:
            plan: list[tuple[Fact, int, Any, str]] = []
            missing: list[str] = []
            for given in batch.facts:
                # Round-trip the JSON parts: the store keeps what a SQL store would read back.
                fact = attrs.evolve(
                    given,
                    value=default_codec.decode(default_codec.encode(given.value)),
                    evidence=default_codec.decode(default_codec.encode(dict(given.evidence))),
                )
                current = self._facts.get(self._keys.get(fact.key, "")) if fact.key else None
                new_version = next_version(
                    fact, None if current is None else current.version, skip_stale=batch.skip_stale
                )
                if new_version is None:
                    continue
                h = content_hash(fact.content)
                vector = batch.vectors.get(h)
                if vector is None:
                    vector = self._stored_vector(h, model, version)
                    if vector is None:
                        missing.append(h)
                plan.append((fact, new_version, vector, h))
            if missing:
                raise vectors_gone(missing)
            now = self._clock()
            out = []
            for fact, new_version, vector, h in plan:
                if fact.key is not None and fact.key in self._keys:
                    self._drop(self._keys[fact.key])
                stored = attrs.evolve(
                    fact,
                    fact_id=str(uuid.uuid4()),
                    version=new_version,
                    created_at=now,
                    text=fact.content,
                )
                assert stored.fact_id is not None
                self._facts[stored.fact_id] = stored
                if stored.key is not None:
                    self._keys[stored.key] = stored.fact_id
                self._vectors[stored.fact_id] = _Vector(model, version, h, vector)
                self._holders.setdefault((h, model, version), set()).add(stored.fact_id)
                self._terms[stored.fact_id] = Counter(_terms(stored.content))
                out.append(stored)
            return out

    def _drop(self, fact_id: str) -> bool:
        fact = self._facts.pop(fact_id, None)
        if fact is None:
            return False
        held = self._vectors.pop(fact_id, None)
        if held is not None:
            holders = self._holders.get((held.hash, held.model, held.version), set())
            holders.discard(fact_id)
            if not holders:
                self._holders.pop((held.hash, held.model, held.version), None)
        self._terms.pop(fact_id, None)
        if fact.key is not None:
            self._keys.pop(fact.key, None)
        return True

    def _remove(self, fact_ids: list[str]) -> int:
        with self._lock:
            return sum(self._drop(f) for f in fact_ids)

    def _remove_key(self, key: str, below_version: int | None) -> bool:
        with self._lock:
            fact = self._facts.get(self._keys.get(key, ""))
            if fact is None or (below_version is not None and (fact.version or 0) >= below_version):
                return False
            assert fact.fact_id is not None
            return self._drop(fact.fact_id)

    def _candidates(self, flt: FactFilter, model: str, version: str) -> list[Fact]:
        return [
            f
            for fid, f in self._facts.items()
            if (self._vectors[fid].model, self._vectors[fid].version) == (model, version)
            and flt.matches(f)
        ]

    def _vector_search(
        self, query: Any, k: int, flt: FactFilter, model: str, version: str
    ) -> list[tuple[Fact, float]]:
        np_ = self._np
        with self._lock:
            found = self._candidates(flt, model, version)
            if not found:
                return []
            matrix = np_.stack([self._vectors[f.fact_id].vector for f in found])  # type: ignore[index]
        norms = np_.linalg.norm(matrix, axis=1) * np_.linalg.norm(query)
        with np_.errstate(invalid="ignore", divide="ignore"):
            dist = 1.0 - np_.where(norms > 0, (matrix @ query) / norms, 0.0)
        order = sorted(range(len(found)), key=lambda i: (float(dist[i]), found[i].fact_id))
        return [(found[i], float(dist[i])) for i in order[:k]]

    def _text_search(
        self, text: str, k: int, flt: FactFilter, model: str, version: str
    ) -> list[tuple[Fact, float]]:
        query = set(_terms(text))
        with self._lock:
            found = self._candidates(flt, model, version)
            docs = [(f, self._terms[f.fact_id]) for f in found]  # type: ignore[index]
        if not query or not docs:
            return []
        avg = sum(sum(t.values()) for _, t in docs) / len(docs) or 1.0
        df = Counter(term for _, t in docs for term in query if term in t)
        scored = []
        for fact, tf in docs:
            length = sum(tf.values())
            score = 0.0
            for term in query:
                if term in tf:
                    idf = math.log(1 + (len(docs) - df[term] + 0.5) / (df[term] + 0.5))
                    f = tf[term]
                    score += (
                        idf
                        * f
                        * (BM25_K1 + 1)
                        / (f + BM25_K1 * (1 - BM25_B + BM25_B * length / avg))
                    )
            if score > 0:
                scored.append((fact, score))
        scored.sort(key=lambda p: (-p[1], p[0].fact_id))
        return scored[:k]

    def _get(self, fact_id: str) -> Fact | None:
        with self._lock:
            return self._facts.get(fact_id)

    def _get_key(self, key: str) -> Fact | None:
        with self._lock:
            return self._facts.get(self._keys.get(key, ""))

    def _scan(self, flt: FactFilter, limit: int) -> list[Fact]:
        with self._lock:
            keyed = [f for f in self._facts.values() if f.key is not None and flt.matches(f)]
        keyed.sort(key=lambda f: (f.key or "").encode())
        return keyed[:limit]

    def _count(self) -> int:
        with self._lock:
            return len(self._facts)
