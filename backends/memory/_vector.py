"""An exact (brute-force) vector index on numpy: what ANN indexes are checked against."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from msstore.capabilities import Capability
from msstore.codec import default_codec
from msstore.records import Hit
from msstore.spi import (
    METRICS,
    StoreBase,
    as_matrix,
    check_dim,
    check_ids,
    check_k,
    check_metadata,
    check_metric,
    check_where,
    contains,
    numpy,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["METRICS", "MemoryVectorIndex"]

CAPABILITIES: Final = frozenset({Capability.VECTOR_FILTER})


class MemoryVectorIndex(StoreBase):
    """Exact nearest-neighbour search over float32 vectors.

    Distances follow pgvector (lower is closer): ``cosine`` = 1 - cosine similarity, ``l2`` =
    Euclidean distance, ``ip`` = negative inner product. Ties are broken by insertion order, so
    results are deterministic. Adding an existing id replaces its vector and metadata.
    """

    def __init__(self, *, dim: int, metric: str = "cosine") -> None:
        self._dim = check_dim(dim)
        self._metric = check_metric(metric)
        self._np = numpy()
        self._lock = threading.RLock()
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._meta: list[Mapping[str, Any]] = []
        self._vecs: npt.NDArray[np.float32] = self._np.zeros((0, dim), dtype=self._np.float32)
        self._count = 0

    def __repr__(self) -> str:
        return f"MemoryVectorIndex(dim={self._dim}, metric={self._metric!r}, count={self._count})"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> str:
        return self._metric

    @property
    def exact(self) -> bool:
        """Always True: every search compares the query with every vector."""
        return True

    @property
    def capabilities(self) -> frozenset[Capability]:
        return CAPABILITIES

    def add(
        self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        self._check_open()
        ids = check_ids(ids)
        arr = as_matrix(vectors, dim=self._dim, rows=len(ids))
        # Through the codec: what a SQL index would refuse is refused here too, and later
        # changes to the caller's dicts do not reach the index.
        metas = [
            default_codec.decode(default_codec.encode(m))
            for m in check_metadata(metadata, len(ids))
        ]
        with self._lock:
            fresh = [i for i, id_ in enumerate(ids) if id_ not in self._pos]
            need = self._count + len(fresh)
            if need > self._vecs.shape[0]:
                grown = self._np.zeros(
                    (max(need, 2 * self._vecs.shape[0], 64), self._dim), dtype=self._np.float32
                )
                grown[: self._count] = self._vecs[: self._count]
                self._vecs = grown
            for i, id_ in enumerate(ids):
                pos = self._pos.get(id_)
                if pos is None:
                    pos = self._count
                    self._count += 1
                    self._pos[id_] = pos
                    self._ids.append(id_)
                    self._meta.append(metas[i])
                else:
                    self._meta[pos] = metas[i]
                self._vecs[pos] = arr[i]

    def _distances(self, query: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        np_ = self._np
        vecs = self._vecs[: self._count]
        if self._metric == "ip":
            return -(vecs @ query)
        if self._metric == "l2":
            return np_.sqrt(((vecs - query) ** 2).sum(axis=1))  # type: ignore[no-any-return]
        norms = np_.linalg.norm(vecs, axis=1) * np_.linalg.norm(query)
        with np_.errstate(invalid="ignore", divide="ignore"):
            sims = np_.where(norms > 0, (vecs @ query) / norms, 0.0)
        return (1.0 - sims).astype(np_.float32)  # type: ignore[no-any-return]

    def search(
        self, vector: Any, k: int = 10, *, where: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        self._check_open()
        check_k(k)
        query = as_matrix(vector, dim=self._dim, rows=1)[0]
        where = check_where(where)
        np_ = self._np
        with self._lock:
            if self._count == 0:
                return []
            dist = self._distances(query)
            if where is not None:
                keep = np_.fromiter(
                    (contains(m, where) for m in self._meta), dtype=bool, count=self._count
                )
                dist = np_.where(keep, dist, np_.inf)
            order = np_.lexsort((np_.arange(self._count), dist))[:k]
            return [
                Hit(self._ids[i], float(dist[i]), self._meta[i])
                for i in order
                if np_.isfinite(dist[i])
            ]

    def remove(self, ids: Sequence[str]) -> int:
        self._check_open()
        with self._lock:
            gone = {self._pos[i] for i in ids if i in self._pos}
            if not gone:
                return 0
            keep = [p for p in range(self._count) if p not in gone]
            self._vecs = self._vecs[keep].copy()
            self._ids = [self._ids[p] for p in keep]
            self._meta = [self._meta[p] for p in keep]
            self._pos = {id_: p for p, id_ in enumerate(self._ids)}
            self._count = len(keep)
            return len(gone)

    def count(self) -> int:
        self._check_open()
        return self._count
