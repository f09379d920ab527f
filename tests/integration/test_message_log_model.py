"""The message log against a small sequential model (Hypothesis stateful testing).

The model keeps the log (each message's channel, recipient, subject, expiry and delivery
count), each agent's subscriptions (pattern and the log position they started at) and cursor.
Rules send direct, broadcast and topic messages, subscribe and unsubscribe, read inboxes, ack,
advance the clock (messages expire) and, on PostgreSQL, reopen the log. Every inbox read must
return exactly what the model says: the agent's messages after its cursor, in log order, and
each delivery counted.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
)

from msstore.keys import match
from msstore.testing import FakeClock
from msstore.work import ChannelType, Message, MessageLog

from ._models import THOROUGH, run_model

AGENTS = ("a", "b", "c")
SUBJECTS = ("tasks.a1.done", "tasks.a2.done", "tasks.a1.failed", "agents.a1.up")
PATTERNS = (None, "tasks.*.done", "tasks.>", "agents.*.up")
Make = Callable[[FakeClock, bool], MessageLog]


@attrs.define
class Logged:
    seq: int  # the model's own order; the store's seq values may differ, the order may not
    channel: str
    to: str | None
    subject: str
    expires: float | None
    attempts: int = 0


class MessageLogModel(RuleBasedStateMachine):
    make_log: Make
    reopen: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.log = type(self).make_log(self.clock, True)
        self.messages: list[Logged] = []
        self.ids: list[Message] = []  # the store's message for each model message
        self.subs: dict[tuple[str, str], tuple[str | None, int]] = {}
        self.cursor: dict[str, int] = {}
        self.last_read: dict[str, list[int]] = {a: [] for a in AGENTS}

    def teardown(self) -> None:
        self.log.close()

    @initialize()
    def channels(self) -> None:
        self.log.create_channel("dm", ChannelType.DIRECT)
        self.log.create_channel("all", ChannelType.BROADCAST)
        self.log.create_channel("ev", ChannelType.TOPIC)

    def expected(self, agent: str) -> list[int]:
        now = self.clock()
        after = self.cursor.get(agent, 0)
        out = []
        for m in self.messages[after:]:
            if m.expires is not None and m.expires <= now:
                continue
            if m.to is not None:
                if m.to == agent:
                    out.append(m.seq)
                continue
            sub = self.subs.get((agent, m.channel))
            if sub is not None and m.seq > sub[1] and (sub[0] is None or match(sub[0], m.subject)):
                out.append(m.seq)
        return out

    @rule(
        sender=st.sampled_from(AGENTS),
        to=st.sampled_from(AGENTS),
        ttl=st.sampled_from([None, 5, 20]),
    )
    def send_direct(self, sender: str, to: str, ttl: int | None) -> None:
        expires = None if ttl is None else self.clock() + ttl
        sent = self.log.send(
            "dm", from_agent=sender, to_agent=to, subject="dm.note", expires_at=expires
        )
        self.messages.append(Logged(len(self.messages) + 1, "dm", to, "dm.note", expires))
        self.ids.append(sent)

    @rule(channel=st.sampled_from(["all", "ev"]), subject=st.sampled_from(SUBJECTS))
    def send_to_subscribers(self, channel: str, subject: str) -> None:
        sent = self.log.send(channel, from_agent="hq", subject=subject)
        self.messages.append(Logged(len(self.messages) + 1, channel, None, subject, None))
        self.ids.append(sent)

    @rule(
        agent=st.sampled_from(AGENTS),
        channel=st.sampled_from(["all", "ev"]),
        pattern=st.sampled_from(PATTERNS),
    )
    def subscribe(self, agent: str, channel: str, pattern: str | None) -> None:
        self.log.subscribe(agent, channel, pattern=pattern)
        self.subs[(agent, channel)] = (pattern, len(self.messages))

    @rule(agent=st.sampled_from(AGENTS), channel=st.sampled_from(["all", "ev"]))
    def unsubscribe(self, agent: str, channel: str) -> None:
        had = self.subs.pop((agent, channel), None) is not None
        assert self.log.unsubscribe(agent, channel) is had

    @rule(agent=st.sampled_from(AGENTS), limit=st.integers(1, 4))
    def read(self, agent: str, limit: int) -> None:
        want = self.expected(agent)[:limit]
        got = self.log.inbox(agent, limit=limit)
        assert [m.message_id for m in got] == [self.ids[s - 1].message_id for s in want]
        for s, m in zip(want, got, strict=True):
            self.messages[s - 1].attempts += 1
            assert m.delivery_attempts == self.messages[s - 1].attempts
        self.last_read[agent] = want

    @precondition(lambda self: any(self.last_read.values()))
    @rule(agent=st.sampled_from(AGENTS), i=st.integers(0, 3))
    def ack(self, agent: str, i: int) -> None:
        read = self.last_read[agent]
        if not read:
            return
        seq = read[min(i, len(read) - 1)]
        self.log.ack(agent, self.ids[seq - 1])
        self.cursor[agent] = max(self.cursor.get(agent, 0), seq)

    @rule(seconds=st.sampled_from([3, 10, 30]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self.reopen)
    @rule()
    def restart(self) -> None:
        self.log.close()
        self.log = type(self).make_log(self.clock, False)


def _run(make: Make, *, reopen: bool, examples: int, steps: int) -> None:
    MessageLogModel.make_log = staticmethod(make)
    MessageLogModel.reopen = reopen
    run_model(MessageLogModel, examples=examples, steps=steps)


def test_the_memory_log_matches_its_model() -> None:
    from msstore.backends.memory import MemoryMessageLog

    _run(
        lambda clock, fresh: MemoryMessageLog(clock=clock),
        reopen=False,
        examples=600 if THOROUGH else 100,
        steps=40,
    )


@pytest.mark.postgres
def test_the_postgres_log_matches_its_model(pg_state_dsn: str) -> None:
    import psycopg

    from msstore.backends.postgres import PostgresMessageLog

    def make(clock: FakeClock, fresh: bool) -> MessageLog:
        if fresh:
            with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
                conn.execute(
                    "TRUNCATE messages.log, messages.subscriptions, messages.channels, "
                    "messages.cursors CASCADE"
                )
        return PostgresMessageLog(pg_state_dsn, clock=clock)

    _run(make, reopen=True, examples=40 if THOROUGH else 8, steps=30)
