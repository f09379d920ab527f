"""An exact (brute-force) vector index on numpy: what ANN indexes are checked against."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from msstore.codec import default_codec
from msstore.records import Hit
from msstore.spi import METRICS, VectorIndexBase, contains, numpy

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["METRICS", "MemoryVectorIndex"]


class MemoryVectorIndex(VectorIndexBase):
    """Exact nearest-neighbour search over float32 vectors.

    Distances follow pgvector (lower is closer): ``cosine`` = 1 - cosine similarity, ``l2`` =
    Euclidean distance, ``ip`` = negative inner product. Ties are broken by insertion order, so
    results are deterministic. Adding an existing id replaces its vector and metadata.
    """

    def __init__(self, *, dim: int, metric: str = "cosine") -> None:
        super().__init__(dim=dim, metric=metric)
        self._np = numpy()
        self._lock = threading.RLock()
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._meta: list[Mapping[str, Any]] = []
        self._vecs: npt.NDArray[np.float32] = self._np.zeros((0, dim), dtype=self._np.float32)
        self._n = 0

    def __repr__(self) -> str:
        return f"MemoryVectorIndex(dim={self._dim}, metric={self._metric!r}, count={self._n})"

    @property
    def exact(self) -> bool:
        """Always True: every search compares the query with every vector."""
        return True

    def _add(
        self, ids: list[str], matrix: npt.NDArray[np.float32], metadata: list[dict[str, Any]]
    ) -> None:
        # Through the codec: what a SQL index would refuse is refused here too, and later
        # changes to the caller's dicts do not reach the index.
        metas = [default_codec.decode(default_codec.encode(m)) for m in metadata]
        with self._lock:
            fresh = [i for i, id_ in enumerate(ids) if id_ not in self._pos]
            need = self._n + len(fresh)
            if need > self._vecs.shape[0]:
                grown = self._np.zeros(
                    (max(need, 2 * self._vecs.shape[0], 64), self._dim), dtype=self._np.float32
                )
                grown[: self._n] = self._vecs[: self._n]
                self._vecs = grown
            for i, id_ in enumerate(ids):
                pos = self._pos.get(id_)
                if pos is None:
                    pos = self._n
                    self._n += 1
                    self._pos[id_] = pos
                    self._ids.append(id_)
                    self._meta.append(metas[i])
                else:
                    self._meta[pos] = metas[i]
                self._vecs[pos] = matrix[i]

    def _distances(self, query: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        np_ = self._np
        vecs = self._vecs[: self._n]
        if self._metric == "ip":
            return -(vecs @ query)
        if self._metric == "l2":
            return np_.sqrt(((vecs - query) ** 2).sum(axis=1))  # type: ignore[no-any-return]
        norms = np_.linalg.norm(vecs, axis=1) * np_.linalg.norm(query)
        with np_.errstate(invalid="ignore", divide="ignore"):
            sims = np_.where(norms > 0, (vecs @ query) / norms, 0.0)
        return (1.0 - sims).astype(np_.float32)  # type: ignore[no-any-return]

    def _search(
        self, query: npt.NDArray[np.float32], k: int, where: Mapping[str, Any] | None
    ) -> list[Hit]:
        np_ = self._np
        with self._lock:
            if self._n == 0:
                return []
            dist = self._distances(query)
            if where is not None:
                keep = np_.fromiter(
                    (contains(m, where) for m in self._meta), dtype=bool, count=self._n
                )
                dist = np_.where(keep, dist, np_.inf)
            order = np_.lexsort((np_.arange(self._n), dist))[:k]
            return [
                Hit(self._ids[i], float(dist[i]), self._meta[i])
                for i in order
                if np_.isfinite(dist[i])
            ]

    def _remove(self, ids: list[str]) -> int:
        with self._lock:
            gone = {self._pos[i] for i in ids if i in self._pos}
            if not gone:
                return 0
            keep = [p for p in range(self._n) if p not in gone]
            self._vecs = self._vecs[keep].copy()
            self._ids = [self._ids[p] for p in keep]
            self._meta = [self._meta[p] for p in keep]
            self._pos = {id_: p for p, id_ in enumerate(self._ids)}
            self._n = len(keep)
            return len(gone)

    def _count(self) -> int:
        return self._n
