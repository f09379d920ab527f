"""``MsstoreStore``: LangGraph's long-term store on the knowledge base, memory and PostgreSQL."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph.store.base", reason="needs msstore[langgraph]")

from langgraph.store.base import InvalidNamespaceError, PutOp

from msstore.errors import InvalidArgument
from msstore.integrations.langgraph import MsstoreStore
from msstore.knowledge import HashingEmbedder
from msstore.testing import FakeClock, eventually
from tests.conftest import KNOWLEDGE_DIM

HASHING = HashingEmbedder(dim=KNOWLEDGE_DIM)


def embed(texts: Sequence[str]) -> list[list[float]]:
    """A plain function, as LangGraph's ``IndexConfig["embed"]`` takes one."""
    return HASHING.embed(list(texts))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make(fact_store_factory: Callable[[], Any], clock: FakeClock) -> Callable[..., MsstoreStore]:
    def make_store(**kw: Any) -> MsstoreStore:
        return MsstoreStore(fact_store_factory(), clock=clock, **kw)

    return make_store


def test_put_get_delete_and_timestamps(make: Callable[..., MsstoreStore], clock: FakeClock) -> None:
    store = make()
    store.put(("users", "u1"), "prefs", {"theme": "dark"})
    clock.advance(3)
    store.put(("users", "u1"), "prefs", {"theme": "light"})
    item = store.get(("users", "u1"), "prefs")
    assert item is not None
    assert item.value == {"theme": "light"}
    assert item.updated_at.timestamp() - item.created_at.timestamp() == pytest.approx(3)
    store.delete(("users", "u1"), "prefs")
    assert store.get(("users", "u1"), "prefs") is None


def test_semantic_search_through_index_config(make: Callable[..., MsstoreStore]) -> None:
    store = make(index={"dims": KNOWLEDGE_DIM, "embed": embed, "fields": ["text"]})
    store.put(("docs",), "py", {"text": "python is a programming language", "lang": "en"})
    store.put(("docs",), "pasta", {"text": "cooking pasta with tomatoes", "lang": "it"})
    store.put(("docs",), "raw", {"text": "python without an index"}, index=False)
    found = store.search(("docs",), query="programming in python", limit=3)
    assert [i.key for i in found] == ["py", "pasta", "raw"]
    assert found[0].score is not None and found[0].score > (found[1].score or 0)
    assert found[2].score is None
    only_it = store.search(("docs",), query="python", filter={"lang": "it"})
    assert [i.key for i in only_it] == ["pasta"]


def test_an_msstore_embedder_and_hybrid_search(make: Callable[..., MsstoreStore]) -> None:
    store = make(embedder=HASHING, index={"dims": KNOWLEDGE_DIM}, search_mode="hybrid")
    store.put(("n",), "a", {"text": "the deploy failed on friday"})
    store.put(("n",), "b", {"text": "lunch menu"})
    assert store.search(("n",), query="deploy failed")[0].key == "a"


def test_without_an_index_a_query_is_ignored(make: Callable[..., MsstoreStore]) -> None:
    store = make()
    store.put(("n",), "b", {"v": 2})
    store.put(("n",), "a", {"v": 1})
    assert [i.key for i in store.search(("n",), query="anything")] == ["a", "b"]


def test_ttl_default_refresh_and_sweep(make: Callable[..., MsstoreStore], clock: FakeClock) -> None:
    store = make(ttl={"default_ttl": 1.0, "refresh_on_read": True})
    store.put(("s",), "chat", {"v": 1})
    store.put(("s",), "forever", {"v": 2}, ttl=None)
    clock.advance(50)
    assert store.get(("s",), "chat") is not None  # (restarts the minute)
    clock.advance(50)
    assert store.get(("s",), "chat", refresh_ttl=False) is not None
    clock.advance(15)
    assert store.get(("s",), "chat") is None
    assert [i.key for i in store.search(("s",))] == ["forever"]
    assert store.sweep_ttl() == 1


def test_the_sweeper_thread_deletes_expired_items(
    make: Callable[..., MsstoreStore], clock: FakeClock
) -> None:
    store = make(ttl={"default_ttl": 1.0, "sweep_interval_minutes": 1})
    store.put(("s",), "k", {"v": 1})
    clock.advance(120)
    done = store.start_ttl_sweeper(sweep_interval_minutes=0.0005)  # (30 ms)
    fact_key = "items.s.==k"
    eventually(lambda: store.items.kb.get_key(fact_key) is None, timeout=30)
    assert store.stop_ttl_sweeper(timeout=30)
    assert done.result(timeout=30) is None


def test_list_namespaces(make: Callable[..., MsstoreStore]) -> None:
    store = make()
    for ns in [("u", "1", "prefs"), ("u", "2", "prefs"), ("v", "x")]:
        store.put(ns, "k", {"v": 1})
    assert store.list_namespaces(prefix=("u",)) == [("u", "1", "prefs"), ("u", "2", "prefs")]
    assert store.list_namespaces(suffix=("prefs",), max_depth=2) == [("u", "1"), ("u", "2")]
    assert store.list_namespaces(prefix=("u", "*", "prefs"), limit=1) == [("u", "1", "prefs")]


def test_langgraphs_namespace_rules_hold_in_batch(make: Callable[..., MsstoreStore]) -> None:
    store = make()
    with pytest.raises(InvalidNamespaceError):
        store.batch([PutOp(("a.b",), "k", {"v": 1})])
    with pytest.raises(InvalidNamespaceError):
        store.put(("langgraph",), "k", {"v": 1})
    with pytest.raises(InvalidArgument, match="ttl"):
        store.batch([PutOp(("a",), "k", {"v": 1}, ttl="soon")])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="both"):
        make(index={"dims": KNOWLEDGE_DIM, "embed": embed}, embedder=HASHING)
    assert store.get(("a",), "k") is None


def test_async_twins(make: Callable[..., MsstoreStore]) -> None:
    store = make(index={"dims": KNOWLEDGE_DIM, "embed": embed})

    async def run() -> list[str]:
        await store.aput(("a",), "k1", {"text": "alpha"})
        await store.aput(("a",), "k2", {"text": "beta"})
        got = await store.aget(("a",), "k1")
        assert got is not None and got.value == {"text": "alpha"}
        return [i.key for i in await store.asearch(("a",), query="beta", limit=1)]

    assert asyncio.run(run()) == ["k2"]


class Chat(TypedDict):
    messages: Annotated[list[str], operator.add]


def test_a_graph_remembers_across_threads(make: Callable[..., MsstoreStore]) -> None:
    from langgraph.graph import END, START, StateGraph
    from langgraph.runtime import Runtime

    store = make(index={"dims": KNOWLEDGE_DIM, "embed": embed, "fields": ["fact"]})

    def remember(state: Chat, runtime: Runtime[None]) -> dict[str, Any]:
        assert runtime.store is not None
        said = state["messages"][-1]
        if said.startswith("remember "):
            runtime.store.put(("memories", "u1"), str(len(said)), {"fact": said[9:]})
            return {"messages": ["noted"]}
        hits = runtime.store.search(("memories", "u1"), query=said, limit=1)
        return {"messages": [hits[0].value["fact"] if hits else "nothing"]}

    builder = StateGraph(Chat)
    builder.add_node("remember", remember)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", END)
    graph = builder.compile(store=store)
    graph.invoke({"messages": ["remember my favourite colour is green"]})
    out = graph.invoke({"messages": ["what is my favourite colour"]})
    assert out["messages"][-1] == "my favourite colour is green"
