"""The cases every :class:`~msstore.knowledge.FactStore` passes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from msstore.errors import StaleVectors, VersionConflict
from msstore.knowledge import Fact, FactFilter, FactStore, check_fact, content_hash

from ._closing import check_closing

__all__ = ["FactStoreConformance"]

MODEL, VERSION = "conformance", "1"
NOW = 1_900_000_000.0


def _unit(dim: int, *hot: int) -> list[float]:
    """A unit vector with equal weight on the ``hot`` axes."""
    vector = [0.0] * dim
    for axis in hot:
        vector[axis] = 1.0
    norm = math.sqrt(len(hot))
    return [v / norm for v in vector]


class FactStoreConformance:
    """Cases for :class:`~msstore.knowledge.FactStore`. Needs fixture ``fact_store_factory``:
    a zero-argument callable returning a fresh, empty store (of any dimension >= 8)."""

    @pytest.fixture
    def store(self, fact_store_factory: Callable[[], FactStore]) -> Iterator[FactStore]:
        """Fixture: a fresh fact store from ``fact_store_factory``, closed after the case."""
        made = fact_store_factory()
        yield made
        made.close()

    @staticmethod
    def _add(
        store: FactStore,
        facts: Sequence[Fact],
        axes: Sequence[Sequence[int]] | None = None,
        *,
        skip_stale: bool = False,
    ) -> list[Fact]:
        """Insert ``facts`` as a knowledge base would: checked, each with a vector."""
        checked = [check_fact(f, now=NOW) for f in facts]
        vectors = {
            content_hash(f.content): _unit(store.dim, *(axes[i] if axes else (i % store.dim,)))
            for i, f in enumerate(checked)
        }
        return store.insert(checked, vectors, model=MODEL, version=VERSION, skip_stale=skip_stale)

    def test_a_store_is_a_context_manager_and_refuses_work_once_closed(
        self, fact_store_factory: Callable[[], FactStore]
    ) -> None:
        check_closing(fact_store_factory, lambda s: s.count())

    def test_inserted_facts_read_back_as_stored(self, store: FactStore) -> None:
        (stored,) = self._add(
            store,
            [
                Fact(
                    entity_type="user",
                    entity_id="u1",
                    predicate="likes",
                    value={"colour": "green", "n": [1, 2]},
                    confidence=0.9,
                    source_agent="a1",
                    evidence={"seen": 3},
                )
            ],
        )
        assert stored.fact_id is not None and stored.version == 1
        assert stored.created_at is not None
        assert stored.text == 'user u1 likes {"colour":"green","n":[1,2]}'
        got = store.get(stored.fact_id)
        assert got == stored
        assert store.get("not-a-fact") is None and store.count() == 1

    def test_a_keyed_fact_replaces_its_key_and_an_older_version_is_refused(
        self, store: FactStore
    ) -> None:
        base: dict[str, Any] = {"entity_type": "user", "entity_id": "u1", "predicate": "city"}
        (first,) = self._add(store, [Fact(**base, value="Paris", key="u1.city")])
        (second,) = self._add(store, [Fact(**base, value="Lyon", key="u1.city")])
        assert (first.version, second.version) == (1, 2)
        found = store.get_key("u1.city")
        assert found is not None and found.value == "Lyon" and store.count() == 1
        assert first.fact_id is not None and store.get(first.fact_id) is None
        with pytest.raises(VersionConflict) as info:
            self._add(store, [Fact(**base, value="Nice", key="u1.city", version=2)])
        assert (info.value.expected, info.value.current) == (2, 2)
        assert (
            self._add(
                store, [Fact(**base, value="Nice", key="u1.city", version=1)], skip_stale=True
            )
            == []
        )
        (third,) = self._add(store, [Fact(**base, value="Nice", key="u1.city", version=7)])
        assert third.version == 7

    def test_a_refused_batch_stores_nothing(self, store: FactStore) -> None:
        base: dict[str, Any] = {"entity_type": "t", "entity_id": "e", "predicate": "p"}
        self._add(store, [Fact(**base, value=1, key="k.one")])
        with pytest.raises(VersionConflict):
            self._add(
                store,
                [Fact(**base, value=2, key="k.two"), Fact(**base, value=3, key="k.one", version=1)],
            )
        assert store.get_key("k.two") is None and store.count() == 1

    def test_a_stored_vector_is_reused_by_content_hash(self, store: FactStore) -> None:
        fact = check_fact(Fact(entity_type="t", entity_id="e", predicate="p", value=1), now=NOW)
        digest = content_hash(fact.content)
        assert store.known_hashes([digest], model=MODEL, version=VERSION) == set()
        self._add(store, [fact])
        assert store.known_hashes([digest, "0" * 64], model=MODEL, version=VERSION) == {digest}
        assert store.known_hashes([digest], model=MODEL, version="2") == set()
        (again,) = store.insert([fact], {}, model=MODEL, version=VERSION)  # no vector given
        assert again.fact_id is not None and store.count() == 2
        other = check_fact(Fact(entity_type="t", entity_id="e", predicate="p", value=2), now=NOW)
        with pytest.raises(StaleVectors) as info:
            store.insert([other], {}, model=MODEL, version=VERSION)
        assert info.value.hashes == [content_hash(other.content)]
        assert store.count() == 2

    def test_vector_search_ranks_by_cosine_distance_within_the_filter(
        self, store: FactStore
    ) -> None:
        near, far, other = self._add(
            store,
            [
                Fact(entity_type="doc", entity_id="near", predicate="p", value=1),
                Fact(entity_type="doc", entity_id="far", predicate="p", value=2),
                Fact(entity_type="note", entity_id="other", predicate="p", value=3),
            ],
            axes=[(0,), (0, 1, 2), (0,)],
        )
        hits = store.vector_search(
            _unit(store.dim, 0), 10, FactFilter(entity_type="doc"), model=MODEL, version=VERSION
        )
        assert [f.fact_id for f, _ in hits] == [near.fact_id, far.fact_id]
        assert hits[0][1] == pytest.approx(0.0, abs=1e-4)
        assert hits[1][1] == pytest.approx(1 - 1 / math.sqrt(3), abs=1e-4)
        assert (
            store.vector_search(_unit(store.dim, 0), 10, FactFilter(), model="x", version="1") == []
        )
        assert (
            len(
                store.vector_search(
                    _unit(store.dim, 0), 1, FactFilter(), model=MODEL, version=VERSION
                )
            )
            == 1
        )
        assert other.fact_id is not None

    def test_text_search_finds_facts_by_their_words(self, store: FactStore) -> None:
        tea, coffee = self._add(
            store,
            [
                Fact(entity_type="user", entity_id="u1", predicate="drinks", value="green tea"),
                Fact(entity_type="user", entity_id="u2", predicate="drinks", value="black coffee"),
            ],
        )
        hits = store.text_search("tea", 10, FactFilter(), model=MODEL, version=VERSION)
        assert [f.fact_id for f, _ in hits] == [tea.fact_id]
        assert hits[0][1] > 0
        both = store.text_search("tea coffee", 10, FactFilter(), model=MODEL, version=VERSION)
        assert {f.fact_id for f, _ in both} == {tea.fact_id, coffee.fact_id}
        only = store.text_search(
            "tea coffee", 10, FactFilter(entity_id="u2"), model=MODEL, version=VERSION
        )
        assert [f.fact_id for f, _ in only] == [coffee.fact_id]

    def test_filters_hold_in_every_read(self, store: FactStore) -> None:
        base: dict[str, Any] = {"entity_type": "user", "predicate": "p"}
        self._add(
            store,
            [
                Fact(**base, entity_id="a", value={"tier": "gold"}, confidence=0.9, key="u.a"),
                Fact(**base, entity_id="b", value={"tier": "free"}, confidence=0.2, key="u.b"),
                Fact(
                    **base, entity_id="c", value={"tier": "gold"}, valid_until=NOW + 10, key="v.c"
                ),
            ],
        )

        def scan(flt: FactFilter) -> list[str]:
            return [f.entity_id for f in store.scan(flt, 10)]

        assert scan(FactFilter()) == ["a", "b", "c"]  # keyed facts, by key
        assert scan(FactFilter(min_confidence=0.5)) == ["a"]
        assert scan(FactFilter(where={"tier": "gold"})) == ["a", "c"]
        assert scan(FactFilter(key_prefix="u.")) == ["a", "b"]
        assert scan(FactFilter(valid_at=NOW + 20)) == ["a", "b"]
        assert store.scan(FactFilter(), 2)[-1].entity_id == "b"

    def test_remove_and_remove_key(self, store: FactStore) -> None:
        base: dict[str, Any] = {"entity_type": "t", "entity_id": "e", "predicate": "p"}
        loose, keyed = self._add(store, [Fact(**base, value=1), Fact(**base, value=2, key="k.x")])
        assert loose.fact_id is not None
        assert store.remove([loose.fact_id, loose.fact_id, "not-an-id"]) == 1
        assert store.remove_key("k.x", below_version=1) is False  # version 1 is not below 1
        assert store.remove_key("k.x", below_version=2) is True
        assert store.remove_key("k.x") is False
        assert store.count() == 0 and keyed.fact_id is not None
