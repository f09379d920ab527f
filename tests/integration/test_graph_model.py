"""Graph checkpoints against a small sequential model: two writers (each remembering the values
it stored, to encode the next as deltas), restarts that forget, prunes by another writer,
deletes, and late puts from before a delete; memory and PostgreSQL."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from langgraph.checkpoint.base.id import uuid6

from msstore.graphs import Blob, CheckpointStore, GraphCheckpoints, StoredCheckpoint

THREADS = ["a", "b"]


def encoded(messages: tuple[str, ...]) -> bytes:
    """A list as a msgpack-like array: a length header, then the items."""
    n = len(messages)
    header = bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
    return header + b"".join(m.encode().ljust(40, b".") for m in messages)


def machine(make_store: Any) -> type[RuleBasedStateMachine]:
    class CheckpointModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.store: CheckpointStore = make_store()
            self.prefix = uuid.uuid4().hex[:8]
            self.writers = [GraphCheckpoints(self.store), GraphCheckpoints(self.store)]
            self.model: dict[str, list[tuple[str, tuple[str, ...]]]] = {t: [] for t in THREADS}
            self.early: dict[str, str] = {}  # (a checkpoint id taken before a delete)
            self.counter = itertools.count()
            self.wrote: list[dict[str, tuple[str, ...]]] = [{}, {}]  # (each writer's last list)

        def tid(self, thread: str) -> str:
            return f"{self.prefix}-{thread}"

        def _put(self, w: int, thread: str, messages: tuple[str, ...], cid: str) -> bool:
            version = f"{next(self.counter):010}.{w}"
            cp = StoredCheckpoint(
                thread_id=self.tid(thread),
                ns="",
                checkpoint_id=cid,
                parent_id=None,
                body_type="raw",
                body=b"",
                metadata={},
                versions={"messages": version},
            )
            blob = Blob(self.tid(thread), "", "messages", version, "raw", encoded(messages))
            return self.writers[w].put(cp, [blob])

        @rule(
            w=st.integers(0, 1),
            thread=st.sampled_from(THREADS),
            grow=st.integers(0, 3),
            fresh=st.booleans(),
        )
        def put(self, w: int, thread: str, grow: int, fresh: bool) -> None:
            history = self.model[thread]
            base = () if fresh or not history else history[-1][1]
            n = next(self.counter)
            messages = (*base, *(f"m{n}-{i}" for i in range(grow)))
            self._stored(w, thread, messages)

        @rule(w=st.integers(0, 1), thread=st.sampled_from(THREADS))
        def put_continuing(self, w: int, thread: str) -> None:
            """A run goes on from the list it wrote last, whatever was pruned meanwhile."""
            messages = (*self.wrote[w].get(thread, ()), f"c{next(self.counter)}")
            self._stored(w, thread, messages)

        def _stored(self, w: int, thread: str, messages: tuple[str, ...]) -> None:
            cid = str(uuid6())
            assert self._put(w, thread, messages, cid)
            self.model[thread].append((cid, messages))
            self.wrote[w][thread] = messages
            self.early.setdefault(thread, str(uuid6()))

        @rule(w=st.integers(0, 1), thread=st.sampled_from(THREADS), keep=st.booleans())
        def prune(self, w: int, thread: str, keep: bool) -> None:
            self.writers[w].prune([self.tid(thread)], strategy="keep_latest" if keep else "delete")
            self.model[thread] = self.model[thread][-1:] if keep else []

        @rule(w=st.integers(0, 1), thread=st.sampled_from(THREADS))
        def delete(self, w: int, thread: str) -> None:
            self.writers[w].delete_thread(self.tid(thread), str(uuid6()))
            self.model[thread] = []

        @rule(w=st.integers(0, 1), thread=st.sampled_from(THREADS))
        def late_put(self, w: int, thread: str) -> None:
            cid = self.early.pop(thread, None)
            if cid is None:
                return
            stored = self._put(w, thread, ("late",), cid)
            if stored:  # (no delete since the id was taken: it is a checkpoint like another)
                history = self.model[thread]
                history.append((cid, ("late",)))
                history.sort()

        @rule(w=st.integers(0, 1))
        def restart(self, w: int) -> None:
            self.writers[w] = GraphCheckpoints(self.store)

        @invariant()
        def every_checkpoint_reads_back_whole(self) -> None:
            reader = GraphCheckpoints(self.store, remember=0)
            for thread in THREADS:
                got = [
                    (t.checkpoint.checkpoint_id, t.blobs[0].data)
                    for t in reader.list(self.tid(thread), "")
                ]
                want = [(cid, encoded(m)) for cid, m in reversed(self.model[thread])]
                assert got == want

    return CheckpointModel


@pytest.mark.parametrize("examples", [120])
def test_checkpoints_follow_the_model(
    kind: str, request: pytest.FixtureRequest, examples: int
) -> None:
    def make() -> CheckpointStore:
        if kind == "memory":
            from msstore.backends.memory import MemoryCheckpointStore

            return MemoryCheckpointStore()
        store: CheckpointStore = request.getfixturevalue("store")
        return store

    model = machine(make)
    model.TestCase.settings = settings(
        max_examples=examples if kind == "memory" else 25,
        stateful_step_count=30,
        deadline=None,
    )
    model.TestCase().runTest()
