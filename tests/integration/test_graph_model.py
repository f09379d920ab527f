"""Graph checkpoints against a small sequential model: two writers (each remembering the values
it stored, to encode the next as deltas), restarts that forget, crashes that leave logged puts
unapplied, prunes by another writer, deletes, and late puts from before a delete; memory,
PostgreSQL, and both behind a KV log."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule
from langgraph.checkpoint.base.id import uuid6

from msstore.graphs import Blob, CheckpointStore, GraphCheckpoints, StoredCheckpoint
from tests.integration._graphs import log_of

THREADS = ["a", "b"]


def encoded(messages: tuple[str, ...]) -> bytes:
    """A list as a msgpack-like array: a length header, then the items."""
    n = len(messages)
    header = bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")
    return header + b"".join(m.encode().ljust(40, b".") for m in messages)


def machine(make_store: Any, make_log: Any = None) -> type[RuleBasedStateMachine]:
    class CheckpointModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.store: CheckpointStore = make_store()
            self.log = None if make_log is None else make_log()
            self.prefix = uuid.uuid4().hex[:8]
            self.writers = [self._writer(), self._writer()]
            self.model: dict[str, list[tuple[str, tuple[str, ...]]]] = {t: [] for t in THREADS}
            # (a checkpoint id taken earlier, and whether the thread was deleted since)
            self.early: dict[str, tuple[str, bool]] = {}
            self.counter = itertools.count()
            self.wrote: list[dict[str, tuple[str, ...]]] = [{}, {}]  # (each writer's last list)

        def _writer(self) -> GraphCheckpoints:
            # (a lag no test waits out: only a read, a flush or recovery applies the log)
            return GraphCheckpoints(self.store, log=self.log, max_lag=3600)

        def teardown(self) -> None:
            self.every_checkpoint_reads_back_whole()
            for writer in self.writers:
                writer.abandon()

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
            self.model[thread].sort()  # (ids are time-ordered, not strictly: order by id)
            self.wrote[w][thread] = messages
            self.early.setdefault(thread, (str(uuid6()), False))

        @rule(w=st.integers(0, 1), thread=st.sampled_from(THREADS), keep=st.booleans())
        def prune(self, w: int, thread: str, keep: bool) -> None:
            for writer in self.writers:  # (after every earlier write is applied)
                writer.flush()
            self.writers[w].prune([self.tid(thread)], strategy="keep_latest" if keep else "delete")
            self.model[thread] = self.model[thread][-1:] if keep else []

        @rule(w=st.integers(0, 1), thread=st.sampled_from(THREADS))
        def delete(self, w: int, thread: str) -> None:
            self.writers[w].delete_thread(self.tid(thread), str(uuid6()))
            self.model[thread] = []
            if thread in self.early:
                self.early[thread] = (self.early[thread][0], True)

        @rule(w=st.integers(0, 1), thread=st.sampled_from(THREADS))
        def late_put(self, w: int, thread: str) -> None:
            taken = self.early.pop(thread, None)
            if taken is None:
                return
            cid, fenced = taken
            stored = self._put(w, thread, ("late",), cid)
            if self.log is None:  # (logged, it is dropped when applied: put cannot know)
                assert stored is not fenced
            if not fenced:  # (no delete since the id was taken: it is a checkpoint like another)
                history = self.model[thread]
                history.append((cid, ("late",)))
                history.sort()

        @rule(w=st.integers(0, 1))
        def restart(self, w: int) -> None:
            self.writers[w].close()
            self.writers[w] = self._writer()

        @rule(w=st.integers(0, 1))
        def crash_and_restart(self, w: int) -> None:
            """The writer dies with its logged puts not applied; its successor applies them
            when it opens (without a log, a crash loses nothing: every put is stored)."""
            self.writers[w].abandon()
            self.writers[w] = self._writer()

        @rule()
        def every_checkpoint_reads_back_whole(self) -> None:
            """(A rule, not an invariant: between checks, writers hold unapplied logged
            puts, and a crash loses them from memory.)"""
            for writer in self.writers:  # (the log's lag passed: every write applied)
                writer.flush()
            reader = GraphCheckpoints(self.store, remember=0)
            for thread in THREADS:
                got = [
                    (t.checkpoint.checkpoint_id, t.blobs[0].data)
                    for t in reader.list(self.tid(thread), "")
                ]
                want = [(cid, encoded(m)) for cid, m in reversed(self.model[thread])]
                assert got == want

    return CheckpointModel


@pytest.mark.parametrize("examples", [100])
def test_checkpoints_follow_the_model(
    kind: str, request: pytest.FixtureRequest, examples: int
) -> None:
    """Memory: with and without a (memory) log; PostgreSQL: direct; ``nats``: PostgreSQL
    behind a JetStream KV log."""
    from msstore.backends.memory import MemoryCheckpointStore, MemoryKV

    runs: list[tuple[Callable[[], CheckpointStore], Callable[[], Any] | None]]
    if kind == "memory":
        runs = [(MemoryCheckpointStore, None), (MemoryCheckpointStore, MemoryKV)]
    else:
        store: CheckpointStore = request.getfixturevalue("store")
        log = log_of(store)
        runs = [(lambda: store, None if log is None else (lambda: log))]
    for make_store, make_log in runs:
        model = machine(make_store, make_log)
        model.TestCase.settings = settings(
            max_examples=examples if kind == "memory" else 20,
            stateful_step_count=30,
            deadline=None,
        )
        model.TestCase().runTest()
