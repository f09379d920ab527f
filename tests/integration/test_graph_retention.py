"""Retention of graph checkpoints (newest N, time-to-live) and pruning that keeps what a
``DeltaChannel`` needs, on memory and PostgreSQL, through real LangGraph graphs."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.graph import END, START, StateGraph

from msstore.errors import InvalidArgument
from msstore.graphs import MAX_CHAIN, CheckpointStore, Head, Retention, doomed
from msstore.integrations.langgraph import MsstoreSaver
from msstore.testing import FakeClock
from tests.integration._graphs import saver_for


class Chat(TypedDict):
    messages: Annotated[list[str], operator.add]
    step: int


def extend(state: list[str], writes: Sequence[list[str]]) -> list[str]:
    return [*state, *(m for batch in writes for m in batch)]


class DeltaChat(TypedDict):
    messages: Annotated[list[str], DeltaChannel(extend, snapshot_frequency=4)]
    step: int


def chat(saver: MsstoreSaver, steps: int, state: type = Chat) -> Any:
    def agent(s: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [f"m{s['step']}"], "step": s["step"] + 1}

    builder: Any = StateGraph(state)
    builder.add_node("agent", agent)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", lambda s: END if s["step"] >= steps else "agent")
    return builder.compile(checkpointer=saver)


def run(saver: MsstoreSaver, steps: int, state: type = Chat) -> Any:
    thread = {"configurable": {"thread_id": f"t-{uuid.uuid4()}"}, "recursion_limit": 1000}
    chat(saver, steps, state).invoke({"messages": [], "step": 0}, thread)
    return thread


def count(saver: MsstoreSaver, thread: Any) -> int:
    return len(list(saver.list(thread)))


def test_keep_latest_bounds_a_long_thread_and_it_still_resumes(store: CheckpointStore) -> None:
    saver = saver_for(store, retention=Retention(keep_latest=5))
    thread = run(saver, 40)
    kept = count(saver, thread)
    assert 5 <= kept <= 10
    newest = saver.get_tuple(thread)
    assert newest is not None
    assert newest.checkpoint["channel_values"]["messages"] == [f"m{i}" for i in range(40)]
    full = saver_for(store)
    assert count(full, run(full, 40)) == 42  # (input, 40 steps, the start: none dropped)


def test_pruning_keeps_the_ancestors_a_delta_channel_rebuilds_from(
    store: CheckpointStore,
) -> None:
    saver = saver_for(store)
    thread = run(saver, 10, DeltaChat)
    want = [f"m{i}" for i in range(10)]
    assert saver.get_tuple(thread) is not None
    before = count(saver, thread)
    saver.prune([thread["configurable"]["thread_id"]], strategy="keep_latest")
    after = count(saver, thread)
    assert 1 < after < before  # (older than the last snapshot went; the chain stayed)
    state = chat(saver, 10, DeltaChat).get_state(thread)
    assert state.values["messages"] == want
    trimmed = saver_for(store, retention=Retention(keep_latest=1))
    other = run(trimmed, 10, DeltaChat)
    assert chat(trimmed, 10, DeltaChat).get_state(other).values["messages"] == want


def test_a_thread_expires_after_its_ttl_and_stays_expired(store: CheckpointStore) -> None:
    clock = FakeClock()
    saver = saver_for(store, retention=Retention(ttl=3600), clock=clock)
    old = run(saver, 3)
    clock.advance(3000)
    recent = run(saver, 3)
    clock.advance(700)
    late = saver.get_tuple(old)
    assert late is not None
    gone = saver.sweep()  # (PostgreSQL's tables hold other tests' threads too)
    assert old["configurable"]["thread_id"] in gone
    assert recent["configurable"]["thread_id"] not in gone
    assert saver.get_tuple(old) is None and saver.get_tuple(recent) is not None
    # a run that started before the expiry sends its checkpoint late: dropped
    saver.put(late.config, late.checkpoint, late.metadata, {})
    assert saver.get_tuple(old) is None
    assert old["configurable"]["thread_id"] not in saver.sweep()
    # a new run on the same thread starts it afresh
    chat(saver, 2).invoke({"messages": [], "step": 0}, old)
    assert saver.get_tuple(old) is not None


def test_a_growing_message_list_is_stored_as_deltas(store: CheckpointStore) -> None:
    saver = saver_for(store)
    thread = run(saver, 40)
    saver.flush()  # (with a log: applied now, not within its lag)
    thread_id = thread["configurable"]["thread_id"]
    found = store.get(thread_id, "", None)
    assert found is not None
    chain = [b for b in found.blobs if b.channel == "messages"]
    assert 2 <= len(chain) <= MAX_CHAIN + 1  # (the newest, down its bases to a whole value)
    assert chain[0].base is not None and chain[-1].base is None
    assert sum(len(b.data) for b in chain[:-1]) < len(chain[-1].data) * len(chain)
    fresh = saver_for(store, remember=0)  # (another process: rebuilds from the rows)
    newest = fresh.get_tuple(thread)
    assert newest is not None
    assert newest.checkpoint["channel_values"]["messages"] == [f"m{i}" for i in range(40)]
    history = [len(t.checkpoint["channel_values"].get("messages", [])) for t in fresh.list(thread)]
    assert history == [*range(40, -1, -1), 0]


def test_a_delta_whose_base_was_pruned_is_stored_whole(store: CheckpointStore) -> None:
    saver = saver_for(store)
    thread_id = f"t-{uuid.uuid4()}"
    config: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    listed = [f"message {i} " * 8 for i in range(30)]

    def put(messages: list[str], version: str, parent: Any) -> Any:
        cp = empty_checkpoint()
        cp["id"] = str(uuid6())
        cp["channel_values"] = {"messages": messages}
        cp["channel_versions"] = {"messages": version}
        return saver.put(parent, cp, {"source": "loop", "step": 1}, {"messages": version})

    first = put(listed, "0000000001.aaaaaa", config)
    saver.flush()
    saver_for(store).prune([thread_id], strategy="delete")  # (another process)
    put([*listed, "one more"], "0000000002.bbbbbb", first)  # (a delta on version 1: gone)
    saver.flush()
    found = store.get(thread_id, "", None)
    assert found is not None
    assert [(b.version, b.base) for b in found.blobs] == [("0000000002.bbbbbb", None)]
    newest = saver_for(store).get_tuple(config)
    assert newest is not None
    assert newest.checkpoint["channel_values"]["messages"] == [*listed, "one more"]


def test_retention_is_validated() -> None:
    with pytest.raises(InvalidArgument, match="keep_latest"):
        Retention(keep_latest=0)
    with pytest.raises(InvalidArgument, match="ttl"):
        Retention(ttl=float("nan"))
    with pytest.raises(InvalidArgument, match="ttl"):
        Retention(ttl=True)


def test_doomed_walks_delta_ancestors_per_namespace() -> None:
    heads = [
        Head("t", "", "1", None),
        Head("t", "", "2", "1", frozenset({"m"})),
        Head("t", "", "3", "2", frozenset({"m"})),
        Head("t", "", "4", "3", frozenset({"m"})),
        Head("t", "sub", "5", None),
        Head("t", "sub", "6", "5"),
    ]
    # 4 needs 3 and 2 (deltas of m), and 1 (m's snapshot: no update counted there)
    assert doomed(heads, 1) == {"t": [("sub", "5")]}
    plain = [Head("u", "", str(i), str(i - 1) if i else None) for i in range(5)]
    assert sorted(doomed(plain, 2)["u"]) == [("", "0"), ("", "1"), ("", "2")]
    assert sorted(doomed(plain, 0)["u"]) == [("", str(i)) for i in range(5)]
