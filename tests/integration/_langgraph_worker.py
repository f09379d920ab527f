"""A process running a LangGraph graph on ``PostgresCheckpointStore``, for the SIGKILL test.

``run``: starts the thread; the ``slow`` node says so on stdout, then waits for the test to kill
the process. Both run with ``durability="sync"``: a step's checkpoint is stored before the next
step starts (LangGraph's default, ``"async"``, stores it in the background, so a kill can lose
the last one and its step runs again). ``resume``: picks the thread up from its last
checkpoint (``invoke(None)``), stops at the review's interrupt, resumes it, prints the final
state as JSON. Every node appends its
name to ``LOG``, so the test counts what ran.

With NATS_URL and BUCKET the saver logs to that JetStream KV bucket first, with a lag no run
outlives: when ``run`` is killed its checkpoints are in the bucket only, and ``resume``'s saver
applies them when it opens.

Usage: python _langgraph_worker.py run|resume DSN THREAD LOG [NATS_URL BUCKET]
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from msstore.backends.nats import NatsClient, NatsConfig, NatsKV
from msstore.backends.postgres import PostgresCheckpointStore
from msstore.buckets import BucketConfig
from msstore.integrations.langgraph import MsstoreSaver


class State(TypedDict):
    topic: str
    draft: str
    checked: bool
    approved: bool


def main() -> None:
    mode, dsn, thread_id, log_path = sys.argv[1:5]
    nats = sys.argv[5:7]

    def note(name: str) -> None:
        with open(log_path, "a") as log:
            log.write(name + "\n")
            log.flush()

    def write(state: State) -> dict[str, Any]:
        note("write")
        return {"draft": f"a note on {state['topic']}"}

    def slow(state: State) -> dict[str, Any]:
        note("slow")
        if mode == "run":
            print("in slow", flush=True)
            threading.Event().wait()  # (killed here)
        return {"checked": True}

    def review(state: State) -> dict[str, Any]:
        note("review")
        return {"approved": bool(interrupt({"draft": state["draft"]}))}

    builder = StateGraph(State)
    for name, node in (("write", write), ("slow", slow), ("review", review)):
        builder.add_node(name, node)
    builder.add_edge(START, "write")
    builder.add_edge("write", "slow")
    builder.add_edge("slow", "review")
    builder.add_edge("review", END)
    with PostgresCheckpointStore(dsn) as store, contextlib.ExitStack() as stack:
        kv = None
        if nats:
            client = NatsClient(NatsConfig(servers=[nats[0]]))
            kv = NatsKV.open(client, BucketConfig(name=nats[1], history=1), owns_client=True)
            stack.callback(kv.close)
        saver = MsstoreSaver(store, log=kv, max_lag=3600)
        stack.callback(saver.close)
        graph = builder.compile(checkpointer=saver)
        thread: Any = {"configurable": {"thread_id": thread_id}}
        if mode == "run":
            start: State = {"topic": "kv", "draft": "", "checked": False, "approved": False}
            graph.invoke(start, thread, durability="sync")
            return
        out = graph.invoke(None, thread, durability="sync")
        assert out["__interrupt__"][0].value == {"draft": "a note on kv"}, out
        print(json.dumps(graph.invoke(Command(resume=True), thread, durability="sync")), flush=True)


if __name__ == "__main__":
    main()
