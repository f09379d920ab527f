"""Items (namespaced JSON documents with ttl) on the knowledge base, memory and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msstore.errors import InvalidArgument
from msstore.knowledge import (
    HashingEmbedder,
    ItemPut,
    Items,
    KnowledgeBase,
    item_key,
    matches_filter,
    parse_item_key,
)
from msstore.testing import T0, FakeClock
from tests.conftest import KNOWLEDGE_DIM


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def items(fact_store_factory: Callable[[], Any], clock: FakeClock) -> Items:
    kb = KnowledgeBase(fact_store_factory(), HashingEmbedder(dim=KNOWLEDGE_DIM), clock=clock)
    return Items(kb, clock=clock)


def put(items: Items, ns: tuple[str, ...], key: str, value: Any, **kw: Any) -> None:
    items.put(ItemPut(ns, key, value, **kw))


def test_put_get_replace_delete(items: Items, clock: FakeClock) -> None:
    put(items, ("users", "u1"), "prefs", {"theme": "dark"})
    clock.advance(5)
    put(items, ("users", "u1"), "prefs", {"theme": "light"})
    got = items.get(("users", "u1"), "prefs")
    assert got is not None
    assert got.value == {"theme": "light"}
    assert (got.created_at, got.updated_at) == (T0, T0 + 5)
    assert items.get(("users",), "prefs") is None
    put(items, ("users", "u1"), "prefs", None)
    assert items.get(("users", "u1"), "prefs") is None


def test_the_last_write_of_a_batch_wins(items: Items) -> None:
    items.put_many(
        [
            ItemPut(("a",), "k", {"n": 1}),
            ItemPut(("a",), "k", None),
            ItemPut(("a",), "k", {"n": 3}),
            ItemPut(("a",), "gone", {"n": 1}),
            ItemPut(("a",), "gone", None),
        ]
    )
    got = items.get(("a",), "k")
    assert got is not None and got.value == {"n": 3}
    assert items.get(("a",), "gone") is None


def test_a_ttl_expires_and_a_read_restarts_it(items: Items, clock: FakeClock) -> None:
    put(items, ("s",), "short", {"v": 1}, ttl=60)
    put(items, ("s",), "kept", {"v": 2})
    clock.advance(50)
    assert items.get(("s",), "short") is not None  # (restarts the ttl: 60 s from now)
    clock.advance(50)
    assert items.get(("s",), "short", refresh=False) is not None
    clock.advance(11)
    assert items.get(("s",), "short") is None
    assert [i.key for i in items.search(("s",))] == ["kept"]
    assert items.list_namespaces() == [("s",)]
    assert items.sweep() == 1
    assert items.sweep() == 0
    assert items.get(("s",), "kept") is not None


def test_a_refresh_never_overwrites_a_newer_write(items: Items, clock: FakeClock) -> None:
    put(items, ("s",), "k", {"v": "old"}, ttl=60)
    stale = items.kb.get_key(item_key(("s",), "k"))
    assert stale is not None
    put(items, ("s",), "k", {"v": "new"}, ttl=60)  # a writer got in after our read
    items._refresh([stale], True)
    got = items.get(("s",), "k")
    assert got is not None and got.value == {"v": "new"}


def test_a_sweep_spares_an_item_refreshed_since(items: Items, clock: FakeClock) -> None:
    put(items, ("s",), "k", {"v": 1}, ttl=10)
    clock.advance(11)
    put(items, ("s",), "k", {"v": 2}, ttl=10)
    assert items.sweep() == 0
    assert items.get(("s",), "k") is not None


def test_filters_with_operators(items: Items) -> None:
    for n in range(6):
        put(items, ("docs",), f"d{n}", {"n": n, "tag": "even" if n % 2 == 0 else "odd"})
    put(items, ("docs",), "nested", {"n": 9, "meta": {"a": 1, "b": 2}})

    def keys(flt: dict[str, Any]) -> list[str]:
        return [i.key for i in items.search(("docs",), filter=flt, limit=20)]

    assert keys({"tag": "even"}) == ["d0", "d2", "d4"]
    assert keys({"n": {"$gte": 2, "$lt": 5}}) == ["d2", "d3", "d4"]
    assert keys({"tag": {"$ne": "odd"}, "n": {"$gt": 0}}) == ["d2", "d4", "nested"]
    assert keys({"meta": {"a": 1}}) == []  # (equality of an object, not containment)
    assert keys({"meta": {"a": 1, "b": 2}}) == ["nested"]
    with pytest.raises(InvalidArgument, match=r"\$like"):
        items.search(("docs",), filter={"n": {"$like": 1}})


def test_search_ranks_indexed_items_then_fills_with_unindexed(items: Items) -> None:
    put(items, ("kb",), "py", {"t": 1}, text="python programming language")
    put(items, ("kb",), "cook", {"t": 2}, text="cooking pasta recipes")
    put(items, ("kb",), "plain", {"t": 3})
    found = items.search(("kb",), query="python programming", limit=3)
    assert [i.key for i in found] == ["py", "cook", "plain"]
    assert found[0].score is not None and found[0].score > (found[1].score or 0)
    assert found[2].score is None
    assert [i.key for i in items.search(("kb",), query="python", limit=1)] == ["py"]
    assert [i.key for i in items.search(("kb",), query="pasta", limit=2, offset=1)] == [
        "py",
        "plain",
    ]


def test_a_namespace_prefix_is_whole_labels(items: Items) -> None:
    put(items, ("a",), "x", {"v": 1})
    put(items, ("a", "x"), "y", {"v": 2})
    put(items, ("ab",), "z", {"v": 3})
    assert [(i.namespace, i.key) for i in items.search(("a",))] == [
        (("a",), "x"),
        (("a", "x"), "y"),
    ]
    assert [i.key for i in items.search(("a", "x"))] == ["y"]
    assert len(items.search(())) == 3


def test_list_namespaces(items: Items) -> None:
    for ns in [("u", "1", "prefs"), ("u", "2", "prefs"), ("u", "2", "notes"), ("v",)]:
        put(items, ns, "k", {"v": 1})
    assert items.list_namespaces() == [
        ("u", "1", "prefs"),
        ("u", "2", "notes"),
        ("u", "2", "prefs"),
        ("v",),
    ]
    assert items.list_namespaces(prefix=("u", "2")) == [("u", "2", "notes"), ("u", "2", "prefs")]
    assert items.list_namespaces(suffix=("prefs",)) == [("u", "1", "prefs"), ("u", "2", "prefs")]
    assert items.list_namespaces(prefix=("u", "*", "notes")) == [("u", "2", "notes")]
    assert items.list_namespaces(max_depth=2) == [("u", "1"), ("u", "2"), ("v",)]
    assert items.list_namespaces(limit=1, offset=1) == [("u", "2", "notes")]


def test_bad_input_is_refused_and_nothing_stored(items: Items) -> None:
    bad = [
        ItemPut(("ok",), "k", {"v": 1}),
        ItemPut(("ok",), "k2", {"v": 1}, ttl=-1),
    ]
    with pytest.raises(InvalidArgument, match="ttl"):
        items.put_many(bad)
    assert items.get(("ok",), "k") is None
    with pytest.raises(InvalidArgument, match="namespace"):
        items.put(ItemPut(("",), "k", {"v": 1}))
    with pytest.raises(InvalidArgument, match="value"):
        items.put(ItemPut(("ok",), "k", [1, 2]))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="too long"):
        items.put(ItemPut(("x" * 600,), "k" * 600, {"v": 1}))
    with pytest.raises(InvalidArgument, match="limit"):
        items.search(("ok",), limit=-1)
    with pytest.raises(InvalidArgument, match="search_mode"):
        Items(items.kb, search_mode="fuzzy")


labels = st.text(min_size=1, max_size=12)


@given(st.lists(labels, max_size=4).map(tuple), labels)
def test_item_keys_round_trip(ns: tuple[str, ...], key: str) -> None:
    assert parse_item_key(item_key(ns, key)) == (ns, key)


@given(st.lists(labels, max_size=3).map(tuple), st.lists(labels, min_size=1, max_size=3), labels)
def test_a_namespace_never_prefixes_an_item_outside_it(
    ns: tuple[str, ...], more: list[str], key: str
) -> None:
    deeper = item_key((*ns, *more), key)
    shallow = item_key(ns, key)
    assert not deeper.startswith(shallow)
    assert not shallow.startswith(item_key((*ns, *more), key)[: -len(key)] + "x")


def test_matches_filter_without_a_field() -> None:
    assert not matches_filter({}, {"n": {"$gt": 1}})
    assert matches_filter({}, {"n": {"$ne": 1}})
    assert matches_filter({"n": 2}, None)
