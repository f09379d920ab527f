"""Pure parts of the knowledge base: fusion, embedders, fact checks, vector checks."""

from __future__ import annotations

import pytest

from msstore.errors import InvalidArgument
from msstore.knowledge import (
    RRF_K,
    reciprocal_rank_fusion,
)

np = pytest.importorskip("numpy", reason="the embedders need numpy")


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]])
    scores = dict(fused)
    assert scores["a"] == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 2))
    assert scores["c"] == pytest.approx(1 / (RRF_K + 3) + 1 / (RRF_K + 1))
    assert scores["b"] == pytest.approx(1 / (RRF_K + 2))
    assert [item for item, _ in fused] == ["a", "c", "b"]


def test_rrf_weights_ties_and_duplicates() -> None:
    assert [i for i, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]
    only_second = reciprocal_rank_fusion([["x"], ["y"]], weights=[0.0, 1.0])
    assert only_second[0] == ("y", pytest.approx(1 / (RRF_K + 1)))  # type: ignore[comparison-overlap]
    assert dict(reciprocal_rank_fusion([["x", "x", "y"]]))["x"] == pytest.approx(1 / (RRF_K + 1))
    assert reciprocal_rank_fusion([]) == []
    with pytest.raises(InvalidArgument):
        reciprocal_rank_fusion([["x"]], k=-1)
    with pytest.raises(InvalidArgument):
        reciprocal_rank_fusion([["x"]], weights=[1.0, 2.0])
