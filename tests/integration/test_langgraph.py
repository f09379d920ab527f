"""``MsstoreSaver`` on memory and on PostgreSQL: LangGraph's own conformance kit, every base and
extended capability, and what its users meet beyond it (late writes to a deleted thread,
writes repeated after a restart, many writers on one thread, sync calls inside an event loop,
a real graph with an interrupt and time travel)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES, DetectedCapabilities
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from msstore.backends.memory import MemoryCheckpointStore
from msstore.graphs import CheckpointStore
from msstore.integrations.langgraph import MsstoreSaver
from msstore.testing.langgraph import memory_saver, server_saver
from tests.integration._graphs import saver_for

Factory = Callable[[], AsyncGenerator[MsstoreSaver, None]]


def test_langgraphs_conformance_kit_passes_every_capability(kind: str) -> None:
    factory: Factory = memory_saver if kind == "memory" else server_saver
    registered = checkpointer_test(name=f"msstore-{kind}")(factory)
    report = asyncio.run(validate(registered)).to_dict()
    print(report)  # (the kit's own report, in the test log)
    assert DetectedCapabilities.from_instance(MsstoreSaver(MemoryCheckpointStore())).detected == (
        ALL_CAPABILITIES
    )  # every extended method overridden: the kit ran them all, skipped none
    results = report["results"]
    assert report["conformance_level"] == "FULL" and set(results) == {
        c.value for c in ALL_CAPABILITIES
    }
    assert all(r["detected"] and r["passed"] and not r["tests_failed"] for r in results.values())
    assert sum(r["tests_passed"] for r in results.values()) == 81 and not any(
        r["tests_skipped"] for r in results.values()
    )


def config(thread: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def checkpoint(values: dict[str, Any], version: str = "0") -> Any:
    cp = empty_checkpoint()
    cp["id"] = str(uuid6())
    cp["channel_values"] = values
    cp["channel_versions"] = {k: f"{i + 1:032}.{version}" for i, k in enumerate(values)}
    return cp


def put(saver: MsstoreSaver, thread: str, cp: Any, parent: str | None = None) -> Any:
    versions = dict(cp["channel_versions"])
    return saver.put(config(thread, parent), cp, {"source": "loop", "step": 1}, versions)


def test_a_late_put_or_write_does_not_bring_a_deleted_thread_back(store: CheckpointStore) -> None:
    saver, thread = saver_for(store), f"t-{uuid.uuid4()}"
    first = checkpoint({"messages": ["hi"]})
    late = checkpoint({"messages": ["hi", "late"]})  # taken by a run before the delete
    stored = put(saver, thread, first)
    saver.delete_thread(thread)
    put(saver, thread, late, parent=first["id"])
    saver.put_writes(stored, [("messages", "late write")], task_id="task-1")
    assert saver.get_tuple(config(thread)) is None and list(saver.list(config(thread))) == []
    fresh = checkpoint({"messages": ["a new conversation"]})  # a run after the delete
    put(saver, thread, fresh)
    found = saver.get_tuple(config(thread))
    assert found is not None and found.checkpoint["channel_values"] == {
        "messages": ["a new conversation"]
    }
    assert [t.checkpoint["id"] for t in saver.list(config(thread))] == [fresh["id"]]


def test_a_write_repeated_after_a_restart_is_stored_once(store: CheckpointStore) -> None:
    thread = f"t-{uuid.uuid4()}"
    stored = put(saver_for(store), thread, checkpoint({"x": 1}))
    writes = [("x", 2), ("y", "b"), ("__error__", "boom")]
    saver_for(store).put_writes(stored, writes, task_id="task-1", task_path="~a")
    again = saver_for(store)  # (a process restarted: a new saver on the same store)
    again.put_writes(stored, [("x", 99), ("y", "b2"), ("__error__", "boom again")], "task-1", "~a")
    found = again.get_tuple(stored)
    assert found is not None
    assert found.pending_writes == [
        ("task-1", "__error__", "boom again"),  # a special channel's write replaces
        ("task-1", "x", 2),
        ("task-1", "y", "b"),
    ]


def test_pending_writes_come_back_in_the_order_a_graph_applies_them(
    store: CheckpointStore,
) -> None:
    saver, thread = saver_for(store), f"t-{uuid.uuid4()}"
    stored = put(saver, thread, checkpoint({"x": 1}))
    saver.put_writes(stored, [("x", "b1"), ("x", "b2")], task_id="task-b", task_path="~1")
    saver.put_writes(stored, [("x", "a1")], task_id="task-a", task_path="~2")
    saver.put_writes(stored, [("x", "c1")], task_id="task-c", task_path="~1")
    found = saver.get_tuple(stored)
    assert found is not None
    assert [v for _, _, v in found.pending_writes or []] == ["b1", "b2", "c1", "a1"]


def write_chain(saver: MsstoreSaver, thread: str, n: int, steps: int = 10) -> list[str]:
    """Writer ``n``'s chain of checkpoints on ``thread``, each with a pending write."""
    ids, parent = [], None
    for step in range(steps):
        cp = checkpoint({f"w{n}": step, "shared": [n, step]}, version=f"{n}.{step}")
        stored = put(saver, thread, cp, parent)
        saver.put_writes(stored, [(f"w{n}", step)], task_id=f"task-{n}")
        parent = cp["id"]
        ids.append(cp["id"])
    return ids


def check_chains(saver: MsstoreSaver, thread: str, ids: list[str]) -> None:
    """Every checkpoint of every writer is there and reads back whole, its parent its own."""
    listed = list(saver.list(config(thread)))
    assert sorted(t.checkpoint["id"] for t in listed) == sorted(ids)
    previous: dict[int, str] = {}
    for tup in sorted(listed, key=lambda t: t.checkpoint["id"]):
        values = tup.checkpoint["channel_values"]
        (n,) = {int(k[1:]) for k in values if k.startswith("w")}
        step = values[f"w{n}"]
        assert values["shared"] == [n, step]
        assert tup.pending_writes == [(f"task-{n}", f"w{n}", step)]
        parent = tup.parent_config["configurable"]["checkpoint_id"] if tup.parent_config else None
        assert parent == previous.get(n), (n, step)
        previous[n] = tup.checkpoint["id"]


def test_eight_threads_writing_one_conversation_stay_consistent(store: CheckpointStore) -> None:
    saver, thread = saver_for(store), f"t-{uuid.uuid4()}"
    errors: list[BaseException] = []
    ids: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        try:
            written = write_chain(saver, thread, n)
            with lock:
                ids.extend(written)
        except BaseException as err:  # (reported below)
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(ids) == 80
    check_chains(saver, thread, ids)


@pytest.mark.postgres
def test_two_processes_writing_one_conversation_stay_consistent(pg_state_dsn: str) -> None:
    from msstore.backends.postgres import PostgresCheckpointStore

    thread = f"t-{uuid.uuid4()}"
    code = (
        "import json, sys; from msstore.backends.postgres import PostgresCheckpointStore; "
        "from msstore.integrations.langgraph import MsstoreSaver; "
        "from tests.integration.test_langgraph import write_chain; "
        "store = PostgresCheckpointStore(sys.argv[1]); "
        "print(json.dumps(write_chain(MsstoreSaver(store), sys.argv[2], int(sys.argv[3]), 30)))"
    )
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, pg_state_dsn, thread, str(n)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
        )
        for n in (1, 2)
    ]
    ids: list[str] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        ids.extend(json.loads(out))
    assert len(ids) == 60
    with PostgresCheckpointStore(pg_state_dsn) as store:
        check_chains(saver_for(store), thread, ids)


def test_sync_calls_work_inside_a_running_event_loop(store: CheckpointStore) -> None:
    saver, thread = saver_for(store), f"t-{uuid.uuid4()}"

    async def agent() -> Any:  # (a sync saver call from a coroutine, as some graphs do)
        stored = put(saver, thread, checkpoint({"x": 1}))
        saver.put_writes(stored, [("x", 2)], task_id="t")
        found = saver.get_tuple(stored)
        listed = [t async for t in saver.alist(config(thread))]
        return found, listed

    found, listed = asyncio.run(asyncio.wait_for(agent(), timeout=60))
    assert found is not None and found.checkpoint["channel_values"] == {"x": 1}
    assert len(listed) == 1


class Draft(TypedDict):
    topic: str
    draft: str
    approved: bool


def build(saver: MsstoreSaver) -> Any:
    def write(state: Draft) -> dict[str, Any]:
        return {"draft": f"a note on {state['topic']}"}

    def review(state: Draft) -> dict[str, Any]:
        return {"approved": bool(interrupt({"draft": state["draft"]}))}

    graph = StateGraph(Draft)
    graph.add_node("write", write)
    graph.add_node("review", review)
    graph.add_edge(START, "write")
    graph.add_edge("write", "review")
    graph.add_edge("review", END)
    return graph.compile(checkpointer=saver)


def test_a_graph_with_an_interrupt_resumes_and_travels_back(store: CheckpointStore) -> None:
    thread = {"configurable": {"thread_id": f"t-{uuid.uuid4()}"}}
    first = build(saver_for(store))
    out = first.invoke({"topic": "kv", "draft": "", "approved": False}, thread)
    assert out["__interrupt__"][0].value == {"draft": "a note on kv"}
    resumed = build(saver_for(store))  # (another saver on the same store: a restart)
    done = resumed.invoke(Command(resume=True), thread)
    assert done == {"topic": "kv", "draft": "a note on kv", "approved": True}
    history = list(resumed.get_state_history(thread))
    assert [s.next for s in history] == [(), ("review",), ("write",), ("__start__",)]
    before_write = history[2]
    assert resumed.get_state(before_write.config).values["draft"] == ""  # as it was then
    fork = resumed.update_state(before_write.config, {"topic": "sql"})  # time travel
    out = resumed.invoke(None, fork)
    assert out["__interrupt__"][0].value == {"draft": "a note on sql"}
    done = resumed.invoke(Command(resume=False), thread)
    assert done == {"topic": "sql", "draft": "a note on sql", "approved": False}


@pytest.mark.postgres
@pytest.mark.parametrize("logged", [False, True], ids=["direct", "nats-log"])
def test_a_graph_killed_mid_step_resumes_from_its_last_checkpoint(
    pg_state_dsn: str, tmp_path: Path, logged: bool, request: pytest.FixtureRequest
) -> None:
    """Logged, the killed run's checkpoints are in the KV bucket only (its lag is an hour):
    the resuming process applies them when its saver opens."""
    worker = Path(__file__).with_name("_langgraph_worker.py")
    log, thread = tmp_path / "ran.log", f"t-{uuid.uuid4()}"
    args = [sys.executable, str(worker)]
    bucket = f"LGK_{uuid.uuid4().hex[:10].upper()}"
    extra = [request.getfixturevalue("msstore_nats_url"), bucket] if logged else []
    with subprocess.Popen(
        [*args, "run", pg_state_dsn, thread, str(log), *extra], stdout=subprocess.PIPE, text=True
    ) as first:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "in slow"  # (mid-step, after a checkpoint)
        first.send_signal(signal.SIGKILL)
        assert first.wait(60) == -signal.SIGKILL
    second = subprocess.run(
        [*args, "resume", pg_state_dsn, thread, str(log), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 0, second.stderr
    final = json.loads(second.stdout.strip().splitlines()[-1])
    assert final == {"topic": "kv", "draft": "a note on kv", "checked": True, "approved": True}
    # write ran once (its checkpoint was stored); slow again (killed before its checkpoint);
    # review twice (once to interrupt, once resumed: LangGraph re-runs an interrupted node)
    assert log.read_text().split() == ["write", "slow", "slow", "review", "review"]
