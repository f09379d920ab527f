"""The knowledge base on both fact stores: memory, and PostgreSQL + pgvector (real server)."""

from __future__ import annotations

import datetime
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from msstore.errors import InvalidArgument, SerializationError, VersionConflict
from msstore.knowledge import RRF_K, Fact, HashingEmbedder, KnowledgeBase, KnowledgeStorage
from msstore.records import Query, Record
from tests.conftest import KNOWLEDGE_DIM


class CountingEmbedder:
    """The hashing embedder, counting the texts it is asked to embed."""

    def __init__(self, dim: int = KNOWLEDGE_DIM) -> None:
        self.inner = HashingEmbedder(dim=dim)
        self.texts: list[str] = []

    dim = property(lambda self: self.inner.dim)
    model = property(lambda self: self.inner.model)
    version = property(lambda self: self.inner.version)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts += list(texts)
        return self.inner.embed(texts)


@pytest.fixture
def kb(fact_store_factory: Callable[[], Any]) -> Any:
    base = KnowledgeBase(fact_store_factory(), CountingEmbedder())
    yield base
    base.close()


def fact(entity: str, predicate: str, value: Any, **kw: Any) -> Fact:
    return Fact(entity_type=kw.pop("entity_type", "user"), entity_id=entity, predicate=predicate,
                value=value, **kw)  # fmt: skip


def test_add_and_read_back(kb: KnowledgeBase) -> None:
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    stored = kb.add(
        fact(
            "alice",
            "prefers",
            {"theme": "dark", "n": 2},
            confidence=0.876,
            valid_from=start,
            valid_until=start + datetime.timedelta(days=30),
            source_agent="planner-1",
            evidence={"turn": 7},
        )
    )
    assert stored.fact_id and stored.version == 1 and stored.created_at
    got = kb.get(stored.fact_id)
    assert got is not None
    assert (got.entity_type, got.entity_id, got.predicate) == ("user", "alice", "prefers")
    assert got.value == {"theme": "dark", "n": 2}
    assert got.confidence == 0.88  # DECIMAL(3,2), in every store
    assert got.valid_from == pytest.approx(start.timestamp())
    assert got.valid_until == pytest.approx(start.timestamp() + 30 * 86400)
    assert got.source_agent == "planner-1" and got.evidence == {"turn": 7}
    assert got.text == 'user alice prefers {"theme":"dark","n":2}'
    assert kb.count() == 1
    assert kb.get("not-a-fact") is None
    assert kb.remove(stored.fact_id) and kb.get(stored.fact_id) is None and kb.count() == 0


def test_the_same_text_is_embedded_once(kb: KnowledgeBase) -> None:
    embedder = kb.embedder
    assert isinstance(embedder, CountingEmbedder)
    shared = "Alice prefers dark mode in the evening"
    kb.add_many(
        [
            fact("alice", "prefers", "dark", text=shared, source_agent="a1"),
            fact("alice", "prefers", "dark", text=shared, source_agent="a2"),
            fact("bob", "likes", "tea"),
        ]
    )
    assert sorted(embedder.texts) == sorted([shared, "user bob likes tea"])
    kb.add(fact("alice", "prefers", "dark", text=shared, source_agent="a3"))
    assert len(embedder.texts) == 2, "a stored text is not embedded again"
    assert kb.stats()["vectors_reused"] == 2 and kb.stats()["texts_embedded"] == 2
    assert kb.count() == 4
    hits = kb.search(shared, k=5, mode="vector")
    same = [h for h in hits if h.fact.text == shared]
    assert len(same) == 3 and all(h.distance == pytest.approx(0.0, abs=1e-5) for h in same)


def test_a_vector_deleted_meanwhile_is_embedded_again(kb: KnowledgeBase) -> None:
    embedder = kb.embedder
    assert isinstance(embedder, CountingEmbedder)
    first = kb.add(fact("carol", "owns", "a cat"))
    store = kb.store
    real = store.known_hashes
    seen: list[set[str]] = []

    def racing(hashes: Sequence[str], **kw: Any) -> set[str]:
        found = real(hashes, **kw)
        seen.append(found)
        assert first.fact_id is not None
        store.remove([first.fact_id])  # the only holder of that vector goes away
        return found

    store.known_hashes = racing  # type: ignore[method-assign]
    again = kb.add(fact("carol", "owns", "a cat"))
    assert seen == [{next(iter(seen[0]))}]  # the lookup found the vector...
    assert embedder.texts.count("user carol owns a cat") == 2  # ...the insert had to embed
    assert kb.get(again.fact_id or "") is not None and kb.count() == 1


FACTS = [
    ("alice", "prefers", "dark mode for the editor", 0.9, "planner"),
    ("alice", "lives_in", "Lisbon near the river", 0.8, "scout"),
    ("bob", "prefers", "light mode for the editor", 0.6, "planner"),
    ("bob", "works_on", "the zebra migration project", 0.95, "scout"),
    ("carol", "studies", "zebra stripes and patterns", 0.7, "scout"),
    ("dave", "plans", "a database migration to PostgreSQL", 0.5, "planner"),
]


def load(kb: KnowledgeBase) -> dict[str, Fact]:
    stored = kb.add_many([fact(e, p, v, confidence=c, source_agent=a) for e, p, v, c, a in FACTS])
    return {f"{f.entity_id}.{f.predicate}": f for f in stored}


def test_vector_search_with_filters(kb: KnowledgeBase) -> None:
    load(kb)
    hits = kb.search("dark mode editor", k=3, mode="vector")
    assert hits[0].fact.entity_id == "alice" and hits[0].fact.predicate == "prefers"
    assert [h.vector_rank for h in hits] == [1, 2, 3]
    assert all(a.distance <= b.distance for a, b in itertools.pairwise(hits))  # type: ignore[operator]
    only_bob = kb.search("dark mode editor", k=3, mode="vector", entity_id="bob")
    assert {h.fact.entity_id for h in only_bob} == {"bob"}
    confident = kb.search("mode", k=10, mode="vector", min_confidence=0.85)
    assert {(h.fact.entity_id, h.fact.predicate) for h in confident} == {
        ("alice", "prefers"),
        ("bob", "works_on"),
    }
    by_agent = kb.search("mode", k=10, mode="vector", source_agent="scout", predicate="studies")
    assert [(h.fact.entity_id) for h in by_agent] == ["carol"]
    with pytest.raises(InvalidArgument):
        kb.search("mode", where="not a mapping")
    with pytest.raises(InvalidArgument):
        kb.search("mode", colour="red")


def test_filters_on_validity_and_value(kb: KnowledgeBase) -> None:
    now = time.time()
    kb.add_many(
        [
            fact("erin", "role", {"team": "infra", "level": 3}, valid_from=now - 100,
                 valid_until=now - 10),
            fact("erin", "role", {"team": "search", "level": 4}, valid_from=now - 10),
            fact("finn", "role", {"team": "infra", "level": 2}, valid_from=now + 1000),
        ]
    )  # fmt: skip
    valid_now = kb.search("role team", k=10, valid_at=now)
    assert [h.fact.value["team"] for h in valid_now] == ["search"]
    then = kb.search(
        "role team", k=10, valid_at=datetime.datetime.fromtimestamp(now - 50, datetime.UTC)
    )
    assert [h.fact.value["team"] for h in then] == ["infra"]
    infra = kb.search("role team", k=10, where={"team": "infra"})
    assert sorted(h.fact.entity_id for h in infra) == ["erin", "finn"]
    with pytest.raises(InvalidArgument):
        kb.search("role", valid_at=datetime.datetime(2026, 1, 1))  # naive: refused


def test_text_search_ranks_the_rare_word_first(kb: KnowledgeBase) -> None:
    load(kb)
    hits = kb.search("Lisbon", k=5, mode="text")
    assert [h.fact.entity_id for h in hits] == ["alice"] and hits[0].text_rank == 1
    both = kb.search("zebra migration", k=5, mode="text")
    assert both[0].fact.predicate == "works_on"  # holds both words
    assert {h.fact.entity_id for h in both} == {"bob", "carol", "dave"}
    assert kb.search("the of and", k=5, mode="text") == []  # stop words only


def test_hybrid_fuses_both_rankings_by_rrf(kb: KnowledgeBase) -> None:
    load(kb)
    hits = kb.search("zebra migration", k=4)
    assert hits[0].fact.predicate == "works_on"
    assert hits[0].vector_rank is not None and hits[0].text_rank is not None
    for h in hits:
        expected = sum(1 / (RRF_K + r) for r in (h.vector_rank, h.text_rank) if r is not None)
        assert h.score == pytest.approx(expected)
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    # A fact only the vectors find still takes part, with no text rank.
    vector_only = [h for h in kb.search("zebra migration", k=6) if h.text_rank is None]
    assert vector_only and all(h.vector_rank is not None for h in vector_only)
    text_weighted = KnowledgeBase(kb.store, kb.embedder, weights=(0.0, 1.0), owns_store=False)
    assert [h.text_rank for h in text_weighted.search("zebra migration", k=3)] == [1, 2, 3]


def test_keyed_facts_are_replaced_by_newer_versions(kb: KnowledgeBase) -> None:
    first = kb.add(fact("gina", "mood", "calm", key="user.gina.mood"))
    assert first.version == 1
    second = kb.add(fact("gina", "mood", "busy", key="user.gina.mood"))
    assert second.version == 2 and kb.count() == 1
    current = kb.get_key("user.gina.mood")
    assert current is not None and current.value == "busy"
    with pytest.raises(VersionConflict):
        kb.add(fact("gina", "mood", "old news", key="user.gina.mood", version=2))
    assert kb.get_key("user.gina.mood").value == "busy"  # type: ignore[union-attr]
    assert kb.add_many([fact("gina", "mood", "x", key="user.gina.mood", version=1)],
                       skip_stale=True) == []  # fmt: skip
    assert kb.add(fact("gina", "mood", "later", key="user.gina.mood", version=9)).version == 9
    assert not kb.remove_key("user.gina.mood", below_version=9)
    assert kb.remove_key("user.gina.mood") and kb.count() == 0
    with pytest.raises(InvalidArgument):
        kb.add_many([fact("a", "b", 1, key="k.a"), fact("a", "b", 2, key="k.a")])


@pytest.mark.parametrize(
    "bad",
    [
        {"entity_type": ""},
        {"predicate": " "},
        {"confidence": 1.5},
        {"confidence": True},
        {"valid_from": datetime.datetime(2026, 1, 1)},
        {"valid_from": 100.0, "valid_until": 50.0},
        {"value": {1, 2}},
        {"value": float("nan")},
        {"key": "bad key"},
        {"version": 0},
        {"text": ""},
        {"source_agent": "x" * 300},
    ],
    ids="-".join,
)
def test_bad_facts_are_refused_and_nothing_is_stored(
    kb: KnowledgeBase, bad: dict[str, Any]
) -> None:
    good = fact("hana", "likes", "tea")
    fields = {"entity_type": "user", "entity_id": "hana", "predicate": "likes", "value": "x", **bad}
    with pytest.raises(InvalidArgument):
        kb.add_many([good, Fact(**fields)])
    assert kb.count() == 0


def test_wrong_dimensions_are_refused(fact_store_factory: Callable[[], Any]) -> None:
    store = fact_store_factory()
    with pytest.raises(InvalidArgument, match="dimension"):
        KnowledgeBase(store, HashingEmbedder(dim=KNOWLEDGE_DIM + 1))

    class Liar(CountingEmbedder):
        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            return [[0.5] * (KNOWLEDGE_DIM - 1) for _ in texts]

    kb = KnowledgeBase(store, Liar())
    with pytest.raises(InvalidArgument, match="dimension"):
        kb.add(fact("ivan", "has", "a bike"))
    assert kb.count() == 0
    kb.close()


@pytest.mark.postgres
def test_postgres_refuses_nul_and_stores_nothing(pg_knowledge_dsn: str) -> None:
    from msstore.backends.postgres import PostgresFactStore

    kb = KnowledgeBase(PostgresFactStore(pg_knowledge_dsn), HashingEmbedder(dim=KNOWLEDGE_DIM))
    before = kb.count()
    with pytest.raises(SerializationError):
        kb.add_many([fact("jo", "says", "fine"), fact("jo", "says", "a\x00b")])
    assert kb.count() == before
    kb.close()


def test_knowledge_storage_is_the_routes_data_storage(kb: KnowledgeBase) -> None:
    clock = [time.time()]
    storage = KnowledgeStorage(kb, clock=lambda: clock[0])
    rec = storage.store("user.kim.prefers", "green tea in the morning")
    assert isinstance(rec, Record) and rec.version == 1
    storage.store("user.kim.drinks", "espresso after lunch", ttl=60)
    storage.store("user.lee.prefers", "black coffee")
    assert storage.retrieve("user.kim.prefers").value == "green tea in the morning"  # type: ignore[union-attr]
    assert storage.store("user.kim.prefers", "oolong tea").version == 2
    found = storage.search(Query(text="tea", prefix="user.kim."))
    assert found[0].key == "user.kim.prefers" and found[0].value == "oolong tea"
    assert {r.key for r in found} <= {"user.kim.prefers", "user.kim.drinks"}
    listed = storage.search("user.")
    assert [r.key for r in listed] == ["user.kim.drinks", "user.kim.prefers", "user.lee.prefers"]
    clock[0] += 120  # the ttl becomes valid_until: expired for reads and searches
    assert storage.retrieve("user.kim.drinks") is None
    assert "user.kim.drinks" not in [r.key for r in storage.search("user.")]
    result = storage.upsert_many(
        [
            Record("user.lee.prefers", "tea", 1, clock[0]),  # not newer than version 1: skipped
            Record("user.lee.prefers", "cocoa", 5, clock[0]),
            Record("user.mo.prefers", "water", 1, clock[0]),
        ]
    )
    assert (result.written, result.skipped) == (2, 1)
    assert storage.retrieve("user.lee.prefers").version == 5  # type: ignore[union-attr]
    assert storage.remove("user.mo.prefers") and storage.retrieve("user.mo.prefers") is None
