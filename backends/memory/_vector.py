"""An exact (brute-force) vector index on numpy: the reference ANN indexes are checked against."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from msstore.capabilities import Capability
from msstore.errors import InvalidArgument, Unsupported
from msstore.filters import contains
from msstore.records import Hit

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["METRICS", "MemoryVectorIndex"]

METRICS: Final = ("cosine", "l2", "ip")
CAPABILITIES: Final = frozenset({Capability.VECTOR_FILTER})


def _numpy() -> Any:
    try:
        import numpy  # noqa: PLC0415 - numpy is optional: only vector users need it
    except ImportError:
        raise Unsupported(
            "the memory vector index needs numpy", hint="pip install 'msstore[vector]'"
        ) from None
    return numpy


class MemoryVectorIndex:
    """Exact nearest-neighbour search over float32 vectors.

    Distances follow pgvector (lower is closer): ``cosine`` = 1 - cosine similarity, ``l2`` =
    Euclidean distance, ``ip`` = negative inner product. Ties are broken by insertion order, so
    results are deterministic. Adding an existing id replaces its vector and metadata.
    """

    def __init__(self, *, dim: int, metric: str = "cosine") -> None:
        if type(dim) is not int or not 1 <= dim <= 16000:
            raise InvalidArgument(f"dim must be an int from 1 to 16000, got {dim!r}")
        if metric not in METRICS:
            raise InvalidArgument(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        self._np = _numpy()
        self._dim = dim
        self._metric = metric
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
    def capabilities(self) -> frozenset[Capability]:
        return CAPABILITIES

    def _matrix(self, vectors: Any, rows: int | None) -> npt.NDArray[np.float32]:
        np_ = self._np
        try:
            arr = np_.asarray(vectors, dtype=np_.float32)
        except (TypeError, ValueError) as err:
            raise InvalidArgument(f"vectors must be numbers: {err}") from None
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self._dim:
            raise InvalidArgument(
                f"expected vectors of dimension {self._dim}, got shape {tuple(arr.shape)}",
                hint="embed with a model of the index's dimension",
            )
        if rows is not None and arr.shape[0] != rows:
            raise InvalidArgument(f"{rows} ids but {arr.shape[0]} vectors")
        if not np_.isfinite(arr).all():
            raise InvalidArgument("vectors must be finite (no NaN or infinity)")
        return arr  # type: ignore[no-any-return]

    def add(
        self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        ids = list(ids)
        if not all(type(i) is str and i for i in ids) or len(set(ids)) != len(ids):
            raise InvalidArgument("ids must be distinct non-empty strings")
        arr = self._matrix(vectors, len(ids))
        metas = [dict(m) for m in metadata] if metadata is not None else [{} for _ in ids]
        if len(metas) != len(ids):
            raise InvalidArgument(f"{len(ids)} ids but {len(metas)} metadata mappings")
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
        if type(k) is not int or k < 1:
            raise InvalidArgument(f"k must be an int >= 1, got {k!r}")
        query = self._matrix(vector, 1)[0]
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
        return self._count
