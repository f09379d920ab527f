"""Pure parts of the knowledge base: fusion, embedders, fact checks, vector checks."""

from __future__ import annotations

import attrs
import pytest

from msstore.errors import InvalidArgument
from msstore.knowledge import (
    Fact,
    FactFilter,
    check_fact,
    content_hash,
)

np = pytest.importorskip("numpy", reason="the embedders need numpy")


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


def test_an_embedder_of_another_dimension_names_the_migration_option() -> None:
    pytest.importorskip("numpy", reason="needs msstore[vector]")
    from msstore.backends.memory import MemoryFactStore
    from msstore.knowledge import HashingEmbedder, KnowledgeBase

    with pytest.raises(InvalidArgument) as info:
        KnowledgeBase(MemoryFactStore(dim=1536), HashingEmbedder(dim=384))
    assert "--embedding-dim 384" in str(info.value)
    assert "Migrator(dsn, embedding_dim=384)" in str(info.value)


def test_the_migrator_checks_its_embedding_dimension() -> None:
    pytest.importorskip("psycopg", reason="needs msstore[postgres]")
    from msstore.backends.postgres import Migrator

    dsn = "postgresql://u@127.0.0.1:1/db"
    assert Migrator(dsn, embedding_dim=384).parameters["embedding_dim"] == "384"
    for bad in (0, 16001, "384", 3.5, True):
        with pytest.raises(InvalidArgument, match="embedding_dim"):
            Migrator(dsn, embedding_dim=bad)  # type: ignore[arg-type]
