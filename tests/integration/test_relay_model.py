"""The outbox relay against a small sequential model (Hypothesis stateful testing).

The model is the list of events writers appended (subject, payload, whether it can ever be
published) and what the stream must hold: each publishable event once, each subject's events in
outbox order, nothing else. Rules: three writers append events (a few on subjects NATS refuses,
and rows holding a batch of task events, one event per task, some unreadable);
one of two relays runs a pass; a pass is interrupted by the other relay's whole pass while it
holds its rows (two relays at once, the second skipping the first's rows and holding back their
subjects); a relay is killed between publish and mark (its transaction rolls back: the events
are in the stream but still waiting); the stream server goes down and comes back; the clock
advances (within the deduplication window); on PostgreSQL, the outbox is reopened (a relay
restart). After every step the stream must hold no event twice, only appended ones, in order
per subject; a final drain must leave every publishable event in the stream and the outbox
empty but for the failed rows, each with its reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from msstore.backends.memory import MemoryEventStream
from msstore.coordination import TASK_EVENTS, OutboxEvent, OutboxRelay, OutboxSource, Outcome
from msstore.testing import FakeClock
from msstore.testing.foreign import foreign_event

from ._models import THOROUGH, run_model

SUBJECTS = ("agents.state.a", "agents.state.b", "tasks.created.t1")
BAD = ("agents.state.*", "agents..state", "no stream here")
WINDOW = 120.0


class Killed(Exception):
    """The relay process died between its publish and its commit."""


# A source over a fresh outbox; ``add(source, subject, payload)`` appends (bad subjects too).
MakeSource = Callable[[FakeClock, bool], OutboxSource]
AddEvent = Callable[[OutboxSource, str, Any], None]


class RelayModel(RuleBasedStateMachine):
    make_source: MakeSource
    add_event: AddEvent
    reopen: bool = False

    @initialize()
    def start(self) -> None:
        self.clock = FakeClock(1_000_000.0)
        self.source = type(self).make_source(self.clock, True)
        self.stream = MemoryEventStream(
            {"AGENT_STATE": ["agents.>"], "TASKS": ["tasks.>"]},
            duplicate_window=WINDOW,
            clock=self.clock,
        )
        self.relays = [OutboxRelay(self.source, self.stream, batch_size=3) for _ in range(2)]
        self.appended: list[tuple[str, int]] = []  # (subject, payload number), in outbox order
        self.bad = 0
        self.advanced = 0.0

    def teardown(self) -> None:
        source = getattr(self, "source", None)
        if source is not None:
            source.close()

    # Writers -------------------------------------------------------------------------------

    @rule(
        writer=st.integers(0, 2),
        subjects=st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=5),
    )
    def append(self, writer: int, subjects: list[str]) -> None:
        for subject in subjects:
            n = len(self.appended)
            type(self).add_event(self.source, subject, {"writer": writer, "n": n})
            self.appended.append((subject, n))

    @rule(size=st.integers(1, 4), insert=st.booleans())
    def append_task_batch(self, size: int, insert: bool) -> None:
        # A statement's task events in one row, as the tasks.queue triggers write them: one
        # event per task once relayed (task ids carry the event's number).
        numbers = range(len(self.appended), len(self.appended) + size)
        batch = {
            "op": "INSERT" if insert else "UPDATE",
            "timestamp": 1.0,
            "task_id": [f"n{n}" for n in numbers],
            "task_type": ["t"] * size,
            "status": ["pending" if insert else "running"] * size,
            "previous_status": None if insert else ["pending"] * size,
            "assigned_agent_id": [None] * size,
            "priority": ["normal"] * size,
            "metadata": [None] * size,
        }
        type(self).add_event(self.source, TASK_EVENTS, batch)
        verb = "created" if insert else "started"
        self.appended.extend((f"tasks.{verb}.n{n}", n) for n in numbers)

    @rule(subject=st.sampled_from(BAD))
    def append_bad(self, subject: str) -> None:
        type(self).add_event(self.source, subject, {"bad": True})
        self.bad += 1

    @rule()
    def append_unreadable_task_batch(self) -> None:
        type(self).add_event(self.source, TASK_EVENTS, {"op": "INSERT", "task_id": ["x"]})
        self.bad += 1

    # Relays --------------------------------------------------------------------------------

    @rule(relay=st.integers(0, 1))
    def run_pass(self, relay: int) -> None:
        self.relays[relay].run_once()

    @rule(relay=st.integers(0, 1))
    def two_relays_at_once(self, relay: int) -> None:
        first, second = self.relays[relay], self.relays[1 - relay]

        def publish(events: Sequence[OutboxEvent]) -> list[Outcome]:
            second.run_once()  # while the first holds its rows
            return first.sink.publish_batch(events)

        self.source.relay_batch(first.batch_size, publish)

    @rule(relay=st.integers(0, 1))
    def killed_after_publishing(self, relay: int) -> None:
        def publish(events: Sequence[OutboxEvent]) -> list[Outcome]:
            self.relays[relay].sink.publish_batch(events)
            raise Killed

        with contextlib.suppress(Killed):
            self.source.relay_batch(self.relays[relay].batch_size, publish)

    @rule(down=st.booleans())
    def stream_server(self, down: bool) -> None:
        self.stream.down = down

    @rule(seconds=st.floats(0.0, WINDOW / 10))
    def advance_clock(self, seconds: float) -> None:
        # Within the deduplication window: past it, a republished event is a new one (the
        # guarantee is exactly once inside the window).
        seconds = min(seconds, WINDOW / 2 - self.advanced)
        self.advanced += seconds
        self.clock.advance(seconds)

    @precondition(lambda self: self.reopen)
    @rule()
    def restart(self) -> None:
        self.source.close()
        self.source = type(self).make_source(self.clock, False)
        self.relays = [OutboxRelay(self.source, self.stream, batch_size=3) for _ in range(2)]

    @rule()
    def drain(self) -> None:
        self.stream.down = False
        relay = self.relays[0]
        for _ in range(len(self.appended) + self.bad + 2):
            if relay.run_once().claimed == 0:
                break
        stored = self._stored()
        assert sorted(n for _, n in stored) == [n for _, n in self.appended]
        stats = self.source.stats()
        assert (stats.depth, stats.failed) == (0, self.bad)
        assert all(reason for _, reason in self.source.failures(limit=1000))

    # What must always hold ----------------------------------------------------------------

    def _stored(self) -> list[tuple[str, int]]:
        events = self.stream.events("AGENT_STATE") + self.stream.events("TASKS")
        return [(e.subject, _number(e.payload)) for e in events]

    @invariant()
    def stream_holds_each_appended_event_at_most_once_in_subject_order(self) -> None:
        if not hasattr(self, "stream"):
            return
        stored = self._stored()
        numbers = [n for _, n in stored]
        assert len(numbers) == len(set(numbers))  # nothing twice inside the window
        assert set(stored) <= set(self.appended)  # nothing never appended, no bad subject
        for subject in SUBJECTS:
            line = [n for s, n in stored if s == subject]
            assert line == sorted(line)  # outbox order per subject
            expected = [n for s, n in self.appended if s == subject]
            assert line == expected[: len(line)]  # no gap: a later one never overtakes


def _number(payload: bytes) -> int:
    import orjson

    event = orjson.loads(payload)
    n: int = event["n"] if "n" in event else int(event["task_id"][1:])
    return n


def _run(make: MakeSource, add: AddEvent, *, reopen: bool, examples: int, steps: int) -> None:
    RelayModel.make_source = staticmethod(make)
    RelayModel.add_event = staticmethod(add)
    RelayModel.reopen = reopen
    run_model(RelayModel, examples=examples, steps=steps)


def test_the_memory_outbox_relay_matches_its_model() -> None:
    from msstore.backends.memory import MemoryOutbox

    def add(source: OutboxSource, subject: str, payload: Any) -> None:
        assert isinstance(source, MemoryOutbox)
        foreign_event(source, subject, payload)  # bad subjects too, as a raw INSERT could

    _run(
        lambda clock, fresh: MemoryOutbox(clock=clock),
        add,
        reopen=False,
        examples=600 if THOROUGH else 120,
        steps=40,
    )


@pytest.mark.postgres
def test_the_postgres_outbox_relay_matches_its_model(pg_state_dsn: str) -> None:
    import orjson
    import psycopg

    from msstore.backends.postgres import PostgresOutbox

    def make(clock: FakeClock, fresh: bool) -> OutboxSource:
        if fresh:
            with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
                conn.execute("TRUNCATE messages.outbox")
        return PostgresOutbox(pg_state_dsn)

    def add(source: OutboxSource, subject: str, payload: Any) -> None:
        with psycopg.connect(pg_state_dsn) as conn:  # a writer's own transaction
            conn.execute(
                "INSERT INTO messages.outbox (subject, payload) VALUES (%s, %s::jsonb)",
                [subject, orjson.dumps(payload).decode()],
            )

    _run(make, add, reopen=True, examples=40 if THOROUGH else 15, steps=25)
