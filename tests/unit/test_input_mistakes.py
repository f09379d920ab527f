"""Natural mistakes with collections: one value where several go (a str, a UUID, a dict, a
record), a list where a mapping goes. Each is an InvalidArgument that says what was expected,
and nothing is written; never a TypeError from deep inside, never a string iterated as keys."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import msstore
from msstore.backends.memory import (
    MemoryFactStore,
    MemoryOutbox,
    MemorySessionStore,
    MemoryTable,
    MemoryTaskQueue,
    MemoryVectorIndex,
)
from msstore.coordination import subscribe
from msstore.errors import InvalidArgument
from msstore.knowledge import Fact, HashingEmbedder, KnowledgeBase
from msstore.records import Record
from msstore.state import DataRouter, HybridStateManager
from msstore.work import TaskSpec

pytest.importorskip("numpy", reason="the vector cases need msstore[vector]")

FACT = Fact(entity_type="user", entity_id="alice", predicate="likes", value="tea")


def _kv() -> Any:
    kv = msstore.open_kv("memory://MISTAKES")
    kv.put("abc", 1)
    return kv


def _manager() -> HybridStateManager:
    return HybridStateManager(msstore.open_kv("memory://MANAGED"), MemoryTable())


def _vectors() -> MemoryVectorIndex:
    index = MemoryVectorIndex(dim=3)
    index.add(["d1"], [[1.0, 0.0, 0.0]])
    return index


def _kb() -> KnowledgeBase:
    return KnowledgeBase(MemoryFactStore(dim=16), HashingEmbedder(dim=16))


def _subscribe_with_float_backoff() -> None:
    subscribe(None, lambda event: None, stream="S", subject="s.>", backoff=1.0)  # type: ignore[arg-type]


# (what the call does wrong, the call, a word the message must hold)
MISTAKES: list[tuple[str, Callable[[], object], str]] = [
    ("kv.get_many('abc')", lambda: _kv().get_many("abc"), "list of keys"),
    ("kv.put_many('abc')", lambda: _kv().put_many("abc"), "(key, value) pairs"),
    ("kv.put_many(['ab'])", lambda: _kv().put_many(["ab"]), "item 0"),
    ("manager.get_many('abc')", lambda: _manager().get_many("abc"), "list of keys"),
    (
        "manager.put_many('abc')",
        lambda: _manager().put_many("abc"),  # type: ignore[arg-type]
        "(key, value) pairs",
    ),
    (
        "storage.upsert_many(one Record)",
        lambda: MemoryTable().upsert_many(Record("a1.k", 1, 1, time.time())),  # type: ignore[arg-type]
        "list of Record",
    ),
    (
        "enqueue(depends_on=<UUID>)",
        lambda: MemoryTaskQueue().enqueue("t", depends_on=uuid.uuid4()),  # type: ignore[arg-type]
        "depends_on=[task_id]",
    ),
    (
        "enqueue(depends_on='abc')",
        lambda: MemoryTaskQueue().enqueue("t", depends_on="abc"),  # type: ignore[arg-type]
        "list of task ids",
    ),
    (
        "enqueue_many(one TaskSpec)",
        lambda: MemoryTaskQueue().enqueue_many(TaskSpec("t")),  # type: ignore[arg-type]
        "list of TaskSpec",
    ),
    ("claim(types='crawl')", lambda: MemoryTaskQueue().claim("w", types="crawl"), "list"),
    ("vector.add('d1', ...)", lambda: _vectors().add("d1", [[1.0, 2.0, 3.0]]), "list of strings"),
    (
        "vector.add(metadata=<dict>)",
        lambda: _vectors().add(["d2"], [[1.0, 2.0, 3.0]], {"lang": "en"}),  # type: ignore[arg-type]
        "mappings, one per id",
    ),
    (
        "vector.add(metadata=[<list>])",
        lambda: _vectors().add(["d2"], [[1.0, 2.0, 3.0]], [["en"]]),  # type: ignore[list-item]
        "metadata[0] must be a mapping",
    ),
    ("vector.remove('d1')", lambda: _vectors().remove("d1"), "list of strings"),
    ("vector.search(where=<list>)", lambda: _vectors().search([1, 0, 0], where=["x"]), "mapping"),  # type: ignore[arg-type]
    ("embed('text')", lambda: HashingEmbedder(dim=8).embed("hello"), "list of strings"),
    ("embed(<dict>)", lambda: HashingEmbedder(dim=8).embed({"a": 1}), "list of strings"),  # type: ignore[arg-type]
    ("kb.add([fact])", lambda: _kb().add([FACT]), "add_many"),  # type: ignore[arg-type]
    ("kb.add_many(fact)", lambda: _kb().add_many(FACT), "list of Facts"),  # type: ignore[arg-type]
    ("facts.remove('id')", lambda: MemoryFactStore(dim=4).remove("abc"), "list of fact ids"),
    (
        "Fact(evidence=<list>)",
        lambda: _kb().add(
            Fact(entity_type="u", entity_id="a", predicate="p", value=1, evidence=["x"])  # type: ignore[arg-type]
        ),
        "evidence must be a mapping",
    ),
    (
        "sessions.open(permissions=<list>)",
        lambda: MemorySessionStore().open(agent="a", ttl=10, permissions=["web"]),  # type: ignore[arg-type]
        "mapping",
    ),
    (
        "outbox.add_many(one pair)",
        lambda: MemoryOutbox().add_many(("a.b", {"x": 1})),  # type: ignore[arg-type]
        "(subject, payload) pairs",
    ),
    ("subscribe(backoff=1.0)", _subscribe_with_float_backoff, "list of seconds"),
    ("DataRouter(overrides=<list>)", lambda: DataRouter(overrides=["x"]), "mapping"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("call", "mistake", "says"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_collection_mistake_is_an_invalid_argument_saying_what_was_expected(
    call: str, mistake: Callable[[], object], says: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        mistake()
    assert says in str(info.value), f"{call}: {info.value}"


def test_nothing_is_written_by_a_refused_batch() -> None:
    kv = _kv()
    with pytest.raises(InvalidArgument):
        kv.put_many([("a.b", 1), "cd"])
    assert kv.get("a.b") is None
    outbox = MemoryOutbox()
    with pytest.raises(InvalidArgument):
        outbox.add_many([("a.b", {"x": 1}), ("a.c",)])  # type: ignore[list-item]
    assert outbox.stats().depth == 0
