"""The cases every :class:`~msstore.work.MessageLog` passes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from msstore.errors import DuplicateKey, InvalidArgument, NotFound, SerializationError
from msstore.testing._clock import FakeClock
from msstore.work import ChannelType, MessageLog, MessageType

from ._closing import check_closing

__all__ = ["MessageLogConformance"]


class MessageLogConformance:
    """Cases for :class:`~msstore.work.MessageLog`. Needs fixture ``messages_factory``:
    a callable taking a clock and returning a fresh, empty log that reads time from it."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        """Fixture: the fake clock the log is made with."""
        return FakeClock()

    @pytest.fixture
    def log(
        self, messages_factory: Callable[[Callable[[], float]], MessageLog], clock: FakeClock
    ) -> Iterator[MessageLog]:
        """Fixture: a fresh message log from ``messages_factory(clock)``, closed after the case."""
        store = messages_factory(clock)
        yield store
        store.close()

    def test_a_log_is_a_context_manager_and_refuses_work_once_closed(
        self, messages_factory: Callable[[Callable[[], float]], MessageLog], clock: FakeClock
    ) -> None:
        check_closing(lambda: messages_factory(clock), lambda log: log.channel("c"))

    def test_channels_are_created_once_and_read_back(self, log: MessageLog) -> None:
        made = log.create_channel("ops", ChannelType.BROADCAST, description="alerts")
        assert log.channel("ops") == made
        assert log.channel("nope") is None
        with pytest.raises(DuplicateKey):
            log.create_channel("ops", "topic")

    def test_a_direct_message_reaches_only_its_recipient(self, log: MessageLog) -> None:
        log.create_channel("dm", ChannelType.DIRECT)
        sent = log.send("dm", from_agent="a", to_agent="b", subject="hello", payload={"x": 1})
        (got,) = log.inbox("b")
        assert (got.message_id, got.payload, got.from_agent, got.to_agent) == (
            sent.message_id,
            {"x": 1},
            "a",
            "b",
        )
        assert got.delivery_attempts == 1 and got.delivered_at is not None
        assert log.inbox("c") == []

    def test_a_direct_channel_needs_a_recipient(self, log: MessageLog) -> None:
        log.create_channel("dm", ChannelType.DIRECT)
        with pytest.raises(InvalidArgument, match="to_agent"):
            log.send("dm", from_agent="a", subject="s")

    def test_a_broadcast_reaches_every_subscriber_from_its_subscription_on(
        self, log: MessageLog
    ) -> None:
        log.create_channel("all", ChannelType.BROADCAST)
        log.subscribe("early", "all")
        log.send("all", from_agent="hq", subject="first")
        log.subscribe("late", "all")
        log.send("all", from_agent="hq", subject="second")
        assert [m.subject for m in log.inbox("early")] == ["first", "second"]
        assert [m.subject for m in log.inbox("late")] == ["second"]
        assert log.inbox("stranger") == []

    def test_a_topic_subscription_filters_by_subject_pattern(self, log: MessageLog) -> None:
        log.create_channel("events", ChannelType.TOPIC)
        log.subscribe("w", "events", pattern="tasks.*.done")
        log.subscribe("all", "events", pattern="tasks.>")
        for subject in ("tasks.a1.done", "tasks.a1.failed", "tasks.a2.done", "agents.a1.done"):
            log.send("events", from_agent="hq", subject=subject)
        assert [m.subject for m in log.inbox("w")] == ["tasks.a1.done", "tasks.a2.done"]
        assert [m.subject for m in log.inbox("all")] == [
            "tasks.a1.done",
            "tasks.a1.failed",
            "tasks.a2.done",
        ]

    def test_unacked_messages_come_back_and_acked_ones_do_not(self, log: MessageLog) -> None:
        log.create_channel("dm", ChannelType.DIRECT)
        for i in range(3):
            log.send("dm", from_agent="a", to_agent="b", subject=f"m.{i}")
        first = log.inbox("b", limit=2)
        assert [m.subject for m in first] == ["m.0", "m.1"]
        again = log.inbox("b", limit=2)  # nothing acked: delivered again (at-least-once)
        assert [m.subject for m in again] == ["m.0", "m.1"]
        assert [m.delivery_attempts for m in again] == [2, 2]
        log.ack("b", again[0])
        assert [m.subject for m in log.inbox("b")] == ["m.1", "m.2"]
        log.ack("b", again[1])
        (last,) = log.inbox("b")
        log.ack("b", last)
        assert log.inbox("b") == []

    def test_an_expired_message_is_not_delivered(self, log: MessageLog, clock: FakeClock) -> None:
        log.create_channel("dm", ChannelType.DIRECT)
        log.send("dm", from_agent="a", to_agent="b", subject="soon", expires_at=clock() + 10)
        log.send("dm", from_agent="a", to_agent="b", subject="kept")
        clock.advance(11)
        assert [m.subject for m in log.inbox("b")] == ["kept"]

    def test_request_and_reply_share_a_correlation_id(self, log: MessageLog) -> None:
        log.create_channel("rpc", ChannelType.DIRECT)
        request = log.request("rpc", from_agent="client", to_agent="server", subject="sum")
        assert request.correlation_id is not None
        assert request.message_type is MessageType.QUERY
        (seen,) = log.inbox("server")
        answer = log.reply(seen, from_agent="server", payload={"sum": 3})
        assert answer.correlation_id == request.correlation_id and answer.to_agent == "client"
        assert [m.payload for m in log.replies(request.correlation_id)] == [{"sum": 3}]
        assert [m.message_type for m in log.inbox("client")] == [MessageType.RESPONSE]
        assert log.replies(uuid.uuid4()) == []

    def test_an_unsubscribed_agent_gets_nothing_more(self, log: MessageLog) -> None:
        log.create_channel("all", ChannelType.BROADCAST)
        log.subscribe("w", "all")
        assert log.unsubscribe("w", "all") is True
        assert log.unsubscribe("w", "all") is False
        log.send("all", from_agent="hq", subject="after")
        assert log.inbox("w") == []

    def test_an_unknown_channel_is_not_found_and_nothing_is_written(self, log: MessageLog) -> None:
        with pytest.raises(NotFound):
            log.send("ghost", from_agent="a", to_agent="b", subject="s")
        with pytest.raises(NotFound):
            log.subscribe("a", "ghost")
        assert log.inbox("b") == []

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"priority": 11}, "priority"),
            ({"priority": -1}, "priority"),
            ({"subject": ""}, "subject"),
            ({"subject": "a b"}, "subject"),
            ({"from_agent": ""}, "from_agent"),
            ({"to_agent": "x.y"}, "to_agent"),
            ({"message_type": "gossip"}, "message_type"),
            ({"expires_at": 1.0}, "expires_at"),
            ({"correlation_id": "abc"}, "correlation_id"),
        ],
        ids=lambda v: v if isinstance(v, str) else None,
    )
    def test_bad_input_names_the_field_and_writes_nothing(
        self, log: MessageLog, kwargs: dict[str, Any], field: str
    ) -> None:
        log.create_channel("dm", ChannelType.DIRECT)
        args: dict[str, Any] = {"from_agent": "a", "to_agent": "b", "subject": "s", **kwargs}
        with pytest.raises(InvalidArgument, match=field):
            log.send("dm", **args)
        assert log.inbox("b") == []

    def test_an_oversize_payload_is_refused(self, log: MessageLog) -> None:
        log.create_channel("dm", ChannelType.DIRECT)
        with pytest.raises(SerializationError):
            log.send("dm", from_agent="a", to_agent="b", subject="s", payload="x" * (2 << 20))
        assert log.inbox("b") == []

    def test_bad_channel_input_is_refused(self, log: MessageLog) -> None:
        with pytest.raises(InvalidArgument, match="channel_type"):
            log.create_channel("c", "radio")
        with pytest.raises(InvalidArgument, match="channel name"):
            log.create_channel("", "topic")
        log.create_channel("t", "topic")
        with pytest.raises(InvalidArgument, match="pattern"):
            log.subscribe("a", "t", pattern="a..b")
