"""Reciprocal rank fusion: one ranking out of several, using ranks only.

Cormack, Clarke and Buettcher (SIGIR 2009): an item's score is the sum over the rankings that
hold it of ``weight / (k + rank)``, ranks counted from 1. Scores from different retrievers
(cosine distances, ``ts_rank`` values) are not comparable; ranks are, so RRF needs no score
normalisation. ``k`` (60 in the paper and here) damps the head: with k = 60 the first and the
tenth item of one list differ by ~13 %, so an item ranked well by both lists beats one ranked
first by only one.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

from msstore.errors import InvalidArgument

__all__ = ["RRF_K", "reciprocal_rank_fusion"]

RRF_K = 60
"""Reciprocal rank fusion's constant k (60, as in Cormack et al., 2009)."""
H = TypeVar("H", bound=Hashable)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[H]], *, k: int = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[H, float]]:
    """``(item, score)`` pairs, best first; ties keep the order of first appearance.

    An item repeated within one ranking counts at its best rank only.
    """
    if type(k) is not int or k < 0:
        raise InvalidArgument(f"rrf k must be an int >= 0, got {k!r}")
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings) or any(
        not isinstance(w, (int, float)) or w < 0 for w in weights
    ):
        raise InvalidArgument("one non-negative weight per ranking")
    scores: dict[H, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        seen: set[H] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda pair: (-pair[1], order[pair[0]]))
