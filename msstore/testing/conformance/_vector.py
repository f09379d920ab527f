"""The cases every :class:`~msstore.protocols.VectorIndex` passes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from msstore.errors import (
    InvalidArgument,
)
from msstore.protocols import VectorIndex

from ._closing import check_closing

__all__ = ["VectorIndexConformance"]


class VectorIndexConformance:
    """Cases for :class:`~msstore.protocols.VectorIndex`. Needs fixture ``vector_factory``
    (``make(dim=, metric=) -> VectorIndex``). An index whose ``exact`` attribute is False (an
    ANN index) is held to ``min_recall`` against brute force; an exact one (the default) must
    return brute force's ids and distances."""

    exact = True
    min_recall = 0.9

    @pytest.fixture(params=["cosine", "l2", "ip"])
    def metric(self, request: pytest.FixtureRequest) -> str:
        """Fixture: each metric in turn (``cosine``, ``l2``, ``ip``)."""
        return str(request.param)

    def _data(self, n: int, dim: int) -> Any:
        np = pytest.importorskip("numpy", reason="vector conformance needs numpy")
        rng = np.random.default_rng(7)
        centers = rng.normal(size=(8, dim))
        return (centers[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)

    @staticmethod
    def _brute(data: Any, q: Any, metric: str) -> Any:
        import numpy as np  # noqa: PLC0415

        if metric == "ip":
            return -(data @ q)
        if metric == "l2":
            return np.sqrt(((data - q) ** 2).sum(axis=1))
        return 1 - (data @ q) / (np.linalg.norm(data, axis=1) * np.linalg.norm(q))

    def test_an_index_is_a_context_manager_and_refuses_work_once_closed(
        self, vector_factory: Callable[..., VectorIndex]
    ) -> None:
        check_closing(lambda: vector_factory(dim=3), lambda v: v.count())

    def test_search_matches_brute_force(
        self, vector_factory: Callable[..., VectorIndex], metric: str
    ) -> None:
        import numpy as np  # noqa: PLC0415

        data = self._data(500, 16)
        index = vector_factory(dim=16, metric=metric)
        ids = [f"v{i}" for i in range(500)]
        index.add(ids, data, [{"i": i, "even": i % 2 == 0} for i in range(500)])
        assert index.count() == 500
        exact = getattr(index, "exact", self.exact)
        recalls = []
        for q in data[:20] + 0.01:
            hits = index.search(q, k=10)
            truth = np.argsort(self._brute(data, q, metric), kind="stable")[:10]
            if exact:
                assert [h.id for h in hits] == [ids[i] for i in truth]
                assert [h.distance for h in hits] == pytest.approx(
                    [float(self._brute(data, q, metric)[i]) for i in truth], rel=1e-4, abs=1e-4
                )
            recalls.append(len({h.id for h in hits} & {ids[i] for i in truth}) / 10)
        assert sum(recalls) / len(recalls) >= (1.0 if exact else self.min_recall)

    def test_filter_returns_k_matching_rows(
        self, vector_factory: Callable[..., VectorIndex]
    ) -> None:
        data = self._data(300, 8)
        index = vector_factory(dim=8, metric="l2")
        index.add([f"v{i}" for i in range(300)], data, [{"bucket": i % 10} for i in range(300)])
        hits = index.search(data[0], k=10, where={"bucket": 3})
        assert len(hits) == 10 and all(h.metadata["bucket"] == 3 for h in hits)

    def test_replace_and_remove(self, vector_factory: Callable[..., VectorIndex]) -> None:
        index = vector_factory(dim=3, metric="l2")
        index.add(["a", "b"], [[0, 0, 0], [5, 5, 5]])
        index.add(["a"], [[9, 9, 9]], [{"v": 2}])
        assert index.count() == 2
        hits = index.search([9, 9, 9], k=1)
        assert hits[0].id == "a" and hits[0].metadata == {"v": 2}
        assert index.remove(["a", "missing"]) == 1
        assert [h.id for h in index.search([9, 9, 9], k=5)] == ["b"]

    def test_wrong_dimension_is_rejected(self, vector_factory: Callable[..., VectorIndex]) -> None:
        index = vector_factory(dim=4, metric="cosine")
        with pytest.raises(InvalidArgument):
            index.add(["x"], [[1, 2, 3]])
        with pytest.raises(InvalidArgument):
            index.add(["x", "y"], [[1, 2, 3, 4]])
        with pytest.raises(InvalidArgument):
            index.add(["x"], [[1, 2, float("nan"), 4]])
        index.add(["ok"], [[1, 2, 3, 4]])
        with pytest.raises(InvalidArgument):
            index.search([1, 2, 3], k=1)
        with pytest.raises(InvalidArgument):
            index.search([1, 2, 3, 4], k=0)
        assert index.count() == 1
