"""The outbox relay's pure parts and its loop over the in-memory outbox and stream."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from msstore.backends.memory import MemoryEventStream, MemoryOutbox
from msstore.codec import default_codec
from msstore.coordination import (
    TASK_EVENTS,
    Failed,
    OutboxEvent,
    OutboxRelay,
    Outcome,
    Published,
    Retry,
    check_subject,
    combine,
    expand,
    redelivery_delay,
    relay_health,
    subject_matches,
    subscribe,
    task_verb,
)
from msstore.coordination._consumers import check_backoff
from msstore.coordination._outbox import subject_problem, summarize
from msstore.errors import InvalidArgument, StoreClosed
from msstore.records import HealthStatus
from msstore.testing import FakeClock
from msstore.testing.foreign import foreign_event


@pytest.mark.parametrize(
    ("subject", "problem"),
    [
        ("agents.state.123", None),
        ("tasks.created.x-y_z", None),
        ("", "empty"),
        ("a b", "whitespace"),
        ("a.\tb", "whitespace"),
        ("a..b", "empty token"),
        (".a", "empty token"),
        ("a.", "empty token"),
        ("a.*", "wildcard"),
        ("a.>", "wildcard"),
        ("x" * 3001, "longer than 3,000"),
    ],
)
def test_subject_problems_say_what_is_wrong(subject: str, problem: str | None) -> None:
    found = subject_problem(subject)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_check_subject_raises_naming_the_subject() -> None:
    assert check_subject("a.b") == "a.b"
    with pytest.raises(InvalidArgument, match=r"'a b'.*whitespace"):
        check_subject("a b")
    with pytest.raises(InvalidArgument, match="must be a str"):
        check_subject(b"a.b")


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("agents.state.>", "agents.state.a", True),
        ("agents.state.>", "agents.state.a.b", True),
        ("agents.state.>", "agents.state", False),
        ("agents.*.a", "agents.state.a", True),
        ("agents.*.a", "agents.state.b", False),
        ("agents.*", "agents.state.a", False),
        ("a.b", "a.b", True),
        ("a.b", "a.b.c", False),
    ],
)
def test_subject_matching_follows_nats_wildcards(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches


def test_health_names_the_worst_condition() -> None:
    assert relay_health(oldest_age=None, reachable=True, window=1.0)[0] is HealthStatus.HEALTHY
    assert relay_health(oldest_age=0.5, reachable=True, window=1.0)[0] is HealthStatus.HEALTHY
    assert relay_health(oldest_age=0.5, reachable=True, window=1.0, failed=2)[0] is (
        HealthStatus.DEGRADED
    )
    status, reason = relay_health(oldest_age=2.5, reachable=True, window=1.0)
    assert status is HealthStatus.DEGRADED and "2.5 s old" in reason
    status, reason = relay_health(oldest_age=0.0, reachable=False, window=1.0)
    assert status is HealthStatus.UNHEALTHY and "unreachable" in reason


def test_backoff_repeats_its_last_delay() -> None:
    backoff = check_backoff([1, 5, 30])
    assert [redelivery_delay(n, backoff) for n in (1, 2, 3, 4, 9)] == [1.0, 5.0, 30.0, 30.0, 30.0]
    for bad in ([], "1", [1, -1], [float("nan")], [True]):
        with pytest.raises(InvalidArgument, match="backoff"):
            check_backoff(bad)  # type: ignore[arg-type]


def test_summary_counts_each_outcome() -> None:
    report = summarize(
        5,
        [Published("S", 1), Published("S", 1, duplicate=True), Failed("no"), Retry("later")],
        held_back=1,
    )
    assert (report.published, report.duplicates, report.failed, report.retried) == (2, 1, 1, 1)
    assert (report.claimed, report.held_back, report.retry_reason) == (5, 1, "later")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def pair(clock: FakeClock) -> tuple[MemoryOutbox, MemoryEventStream]:
    return (
        MemoryOutbox(clock=clock),
        MemoryEventStream({"S": ["agents.>"], "SMALL": ["small.>"]}, clock=clock, max_payload=64),
    )


def test_relay_settings_are_checked(pair: tuple[MemoryOutbox, MemoryEventStream]) -> None:
    outbox, stream = pair
    for kwargs, field in (
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 10_001}, "batch_size"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"lag_window": float("inf")}, "lag_window"),
        ({"max_backoff": -1}, "max_backoff"),
    ):
        with pytest.raises(InvalidArgument, match=field):
            OutboxRelay(outbox, stream, **kwargs)


def test_a_pass_publishes_fails_and_waits_as_each_event_deserves(
    pair: tuple[MemoryOutbox, MemoryEventStream], clock: FakeClock
) -> None:
    outbox, stream = pair
    relay = OutboxRelay(outbox, stream, clock=clock)
    outbox.add("agents.state.a", {"n": 1})
    foreign_event(outbox, "agents.state.*", {"n": 2})
    outbox.add("agents.state.a", {"blob": "x" * 100})  # over the stream's 64 bytes
    outbox.add("elsewhere.a", {"n": 3})
    report = relay.run_once()
    assert (report.claimed, report.published, report.failed) == (4, 1, 3)
    reasons = [r for _, r in outbox.failures()]
    assert "wildcard" in reasons[0] and "64-byte limit" in reasons[1]
    assert reasons[2].startswith("no stream captures subject elsewhere.a: run `msstore provision`")
    assert [orjson.loads(e.payload) for e in stream.events("S")] == [{"n": 1}]

    stream.down = True
    outbox.add("agents.state.b", {"n": 4})
    clock.advance(3)
    report = relay.run_once()
    assert (report.retried, report.retry_reason) == (1, "the stream server is unreachable")
    assert relay.health()[0] is HealthStatus.UNHEALTHY
    stream.down = False
    status, reason = relay.health()
    assert status is HealthStatus.DEGRADED and "3 s old" in reason
    assert relay.run_once().published == 1
    status, reason = relay.health()  # nothing waits, but three events sit set aside
    assert status is HealthStatus.DEGRADED and "3 event(s) set aside" in reason
    assert "msstore relay retry-failed" in reason
    stats = relay.stats()
    assert (stats["depth"], stats["failed_rows"], stats["published"], stats["retried"]) == (
        0,
        3,
        2,
        1,
    )
    assert stats["publish_rate"] == pytest.approx(2 / 10)
    clock.advance(11)
    assert relay.stats()["publish_rate"] == 0.0


def test_published_rows_are_kept_for_the_retention_then_purged(clock: FakeClock) -> None:
    outbox = MemoryOutbox(clock=clock, keep_published=60)
    relay = OutboxRelay(outbox, MemoryEventStream({"S": [">"]}, clock=clock), clock=clock)
    outbox.add("a.b", 1)
    relay.run_once()
    assert outbox.purge_published() == 0
    clock.advance(61)
    assert outbox.purge_published() == 1
    deleting = MemoryOutbox(clock=clock, keep_published=0)
    deleting.add("a.b", 2)
    OutboxRelay(deleting, MemoryEventStream({"S": [">"]})).run_once()
    assert deleting.purge_published() == 0 and deleting.stats().depth == 0
    with pytest.raises(InvalidArgument, match="keep_published"):
        MemoryOutbox(keep_published=-1)


def test_a_crash_between_publish_and_mark_republishes_and_dedup_drops_the_copy(
    pair: tuple[MemoryOutbox, MemoryEventStream],
) -> None:
    outbox, stream = pair
    relay = OutboxRelay(outbox, stream)
    for n in range(3):
        outbox.add("agents.state.a", {"n": n})

    def publish_then_die(events: Sequence[OutboxEvent]) -> list[Outcome]:
        relay.sink.publish_batch(events)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        outbox.relay_batch(10, publish_then_die)
    assert outbox.stats().depth == 3
    report = relay.run_once()
    assert (report.published, report.duplicates) == (3, 3)
    assert len(stream.events("S")) == 3


class SignallingStream(MemoryEventStream):
    """A stream that says when it stored something."""

    def __init__(self) -> None:
        super().__init__({"S": ["agents.>"]})
        self.stored = threading.Event()

    def publish_batch(self, events: Sequence[OutboxEvent]) -> list[Outcome]:
        outcomes = super().publish_batch(events)
        self.stored.set()
        return outcomes


def test_the_loop_wakes_on_new_events_and_stops_cleanly(clock: FakeClock) -> None:
    outbox, stream = MemoryOutbox(clock=clock), SignallingStream()
    relay = OutboxRelay(outbox, stream, poll_interval=3600.0).start()
    try:
        assert relay.running
        outbox.add("agents.state.a", {"n": 1})  # wakes the loop's wait: no hour-long poll
        assert stream.stored.wait(30)
        assert len(stream.events("S")) == 1
    finally:
        relay.stop()  # prompt, though the loop is waiting out its poll
    assert not relay.running
    outbox.close()
    with pytest.raises(StoreClosed):
        outbox.add("a.b", 1)
    status, reason = relay.health()  # an outbox that cannot be read is not healthy
    assert status is HealthStatus.UNHEALTHY and "cannot be read" in reason


def test_subscribe_refuses_bad_settings_before_connecting() -> None:
    client = object()
    handler = print
    cases = [
        ({}, "preset, or both stream and subject"),
        ({"preset": "nope"}, "unknown preset"),
        ({"preset": "task-processor", "max_deliver": 0}, "max_deliver"),
        ({"preset": "task-processor", "batch": 0}, "batch"),
        ({"preset": "task-processor", "ack_wait": 0}, "ack_wait"),
        ({"preset": "task-processor", "durable": "a.b"}, "durable"),
        ({"preset": "task-processor", "dead_letter": "dead.>"}, "wildcard"),
        ({"preset": "task-processor", "backoff": []}, "backoff"),
        ({"stream": "S", "subject": "a.>.b"}, "not a NATS subject"),
        ({"stream": "S", "subject": "a..b"}, "not a NATS subject"),
        ({"stream": "S", "subject": "a.b*"}, "not a NATS subject"),
        ({"stream": "S", "subject": "a b"}, "not a NATS subject"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidArgument, match=message):
            subscribe(client, handler, **kwargs)  # type: ignore[arg-type]


# Task event batches ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "status", "previous", "verb"),
    [
        ("INSERT", "pending", None, "created"),
        ("UPDATE", "running", "pending", "started"),
        ("UPDATE", "completed", "running", "completed"),
        ("UPDATE", "failed", "running", "failed"),
        ("UPDATE", "cancelled", "pending", "cancelled"),
        ("UPDATE", "pending", "running", "updated"),  # a retry
        ("UPDATE", "running", "running", "updated"),  # a renewed lease
    ],
)
def test_a_task_events_verb_follows_its_status_change(
    op: str, status: str, previous: str | None, verb: str
) -> None:
    assert task_verb(op, status, previous) == verb


def _batch_row(batch: dict[str, Any]) -> OutboxEvent:
    return OutboxEvent(
        outbox_id=7, msg_id="m", subject=TASK_EVENTS, payload=orjson.dumps(batch), created_at=1.0
    )


def test_a_task_event_batch_expands_to_one_event_per_task() -> None:
    row = _batch_row(
        {
            "op": "UPDATE",
            "timestamp": 5.0,
            "task_id": ["a", "b"],
            "task_type": ["x", "y"],
            "status": ["completed", "pending"],
            "previous_status": ["running", "running"],
            "assigned_agent_id": [None, "g"],
            "priority": ["normal", "high"],
            "metadata": [{"k": 1}, None],
        }
    )
    events = expand(row, default_codec)
    assert [(e.subject, e.msg_id, e.outbox_id) for e in events] == [
        ("tasks.completed.a", "m.0", 7),
        ("tasks.updated.b", "m.1", 7),
    ]
    assert orjson.loads(events[1].payload) == {
        "task_id": "b",
        "task_type": "y",
        "status": "pending",
        "previous_status": "running",
        "assigned_agent_id": "g",
        "priority": "high",
        "timestamp": 5.0,
        "metadata": None,
    }
    plain = OutboxEvent(outbox_id=1, msg_id="p", subject="a.b", payload=b"{}", created_at=1.0)
    assert expand(plain, default_codec) == [plain]


@pytest.mark.parametrize(
    "batch",
    [{"op": "INSERT"}, {"op": "INSERT", "timestamp": 1, "task_id": ["a"], "status": []}, []],
)
def test_an_unreadable_task_event_batch_is_refused(batch: Any) -> None:
    with pytest.raises(ValueError, match="task event batch"):
        expand(_batch_row(batch), default_codec)


def test_a_rows_outcome_is_its_worst_events() -> None:
    ok, dup = Published("S", 1), Published("S", 2, duplicate=True)
    assert combine([ok, Retry("r"), Failed("f")]) == Failed("f")
    assert combine([ok, Retry("r")]) == Retry("r")
    assert combine([dup, dup]) == Published("S", 2, duplicate=True)
    assert combine([ok, dup]) == Published("S", 2, duplicate=False)
    assert combine([]) == Published("", 0)
