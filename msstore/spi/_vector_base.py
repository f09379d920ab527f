"""The base class of vector indexes: what every :class:`~msstore.protocols.VectorIndex` checks,
written once; an implementation stores and searches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from msstore.capabilities import Capability
from msstore.protocols import VectorIndex
from msstore.records import Hit

from ._store import StoreBase
from ._vectors import (
    as_matrix,
    check_dim,
    check_ids,
    check_k,
    check_metadata,
    check_metric,
    check_where,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["VECTOR_CAPABILITIES", "VectorIndexBase"]

VECTOR_CAPABILITIES: Final = frozenset({Capability.VECTOR_FILTER})
"""What every vector index does (vector_filter: metadata filters in search)."""


class VectorIndexBase(StoreBase, VectorIndex):
    """Everything a vector index does but storing vectors.

    ``dim``: the vectors' dimension; ``metric``: ``cosine``, ``l2`` or ``ip`` (distances
    follow pgvector: lower is closer); ``half``: vectors are kept at half precision, so the
    checks refuse what float16 cannot hold.

    **Implementing an index.** Subclass this and supply, each atomic: :meth:`_add` (insert or
    replace rows: checked ids, a float32 matrix of ``dim`` columns, metadata dicts),
    :meth:`_search` (the ``k`` nearest rows whose metadata contains ``where``, closest first,
    ties by id or insertion order), :meth:`_remove` (how many of ``ids`` were there),
    :meth:`_count`, :meth:`_release`. The conformance suite
    (:class:`~msstore.testing.conformance.VectorIndexConformance`) checks the results.
    """

    def __init__(self, *, dim: int, metric: str = "cosine", half: bool = False) -> None:
        self._dim = check_dim(dim)
        self._metric = check_metric(metric)
        self._half = half

    @property
    def dim(self) -> int:
        """The vectors' dimension."""
        return self._dim

    @property
    def metric(self) -> str:
        """``"cosine"``, ``"l2"`` or ``"ip"``."""
        return self._metric

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What the index can do beyond the protocol (metadata filters)."""
        return VECTOR_CAPABILITIES

    def add(
        self, ids: Sequence[str], vectors: Any, metadata: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Insert or replace vectors and their metadata, all or nothing. A wrong dimension, a
        value that is not a finite number, ids that are not distinct non-empty strings, or
        metadata that is not one mapping per id raise ``InvalidArgument``."""
        ids = check_ids(ids)
        matrix = as_matrix(vectors, dim=self._dim, rows=len(ids), half=self._half)
        metas = check_metadata(metadata, len(ids))
        self._check_open()
        if ids:
            self._add(ids, matrix, metas)

    def search(
        self, vector: Any, k: int = 10, *, where: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """The ``k`` nearest ids, closest first, among those whose metadata contains
        ``where`` (JSON containment)."""
        check_k(k)
        query = as_matrix(vector, dim=self._dim, rows=1)[0]
        checked = check_where(where)
        self._check_open()
        return self._search(query, k, checked)

    def remove(self, ids: Sequence[str]) -> int:
        """Delete the rows of ``ids``; return how many there were."""
        checked = check_ids(ids)
        self._check_open()
        return self._remove(checked) if checked else 0

    def count(self) -> int:
        """How many vectors the index holds."""
        self._check_open()
        return self._count()

    # The primitives --------------------------------------------------------------------------

    def _add(
        self, ids: list[str], matrix: npt.NDArray[np.float32], metadata: list[dict[str, Any]]
    ) -> None:
        raise NotImplementedError

    def _search(
        self, query: npt.NDArray[np.float32], k: int, where: Mapping[str, Any] | None
    ) -> list[Hit]:
        raise NotImplementedError

    def _remove(self, ids: list[str]) -> int:
        raise NotImplementedError

    def _count(self) -> int:
        raise NotImplementedError
