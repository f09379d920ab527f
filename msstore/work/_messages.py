"""Agent messages: channels, the logged message, and the rules of who reads what.

A message goes to one agent (``to_agent``) or to every subscriber of its channel (a broadcast,
or a topic message whose subject matches the subscriber's pattern). Each agent reads its inbox
from a durable cursor: the messages after the cursor, in log order, each read counted as a
delivery (``delivery_attempts``, ``delivered_at``); ``ack`` moves the cursor past what the agent
has processed (``processed_at``). What was delivered and not acked comes back on the next read
(at-least-once). Subject patterns use the key grammar's wildcards (:func:`msstore.keys.match`):
``*`` one token, ``>`` the rest.
"""

from __future__ import annotations

import enum
import re
import uuid
from typing import Any, Final

import attrs

from msstore import keys as keygrammar
from msstore.codec import Encoded
from msstore.errors import DuplicateKey, InvalidArgument, NotFound

from ._checks import check_agent, check_time, check_uuid

__all__ = [
    "MAX_MESSAGE_PRIORITY",
    "Channel",
    "ChannelType",
    "Message",
    "MessageDraft",
    "MessageType",
    "Subscription",
    "addressed_to",
    "channel_taken",
    "check_channel_name",
    "check_channel_type",
    "check_pattern",
    "check_subject",
    "no_channel",
    "no_message",
    "pattern_regex",
]

MAX_NAME: Final = 255
MAX_SUBJECT: Final = 255
MAX_MESSAGE_PRIORITY: Final = 10
"""The highest message priority (0 is the lowest)."""


class ChannelType(enum.StrEnum):
    """``direct`` channels carry messages to one agent; the others reach subscribers."""

    BROADCAST = "broadcast"
    DIRECT = "direct"
    TOPIC = "topic"
    QUEUE = "queue"


class MessageType(enum.StrEnum):
    """What a message is for; ``request`` sends a query, ``reply`` a response."""

    COMMAND = "command"
    QUERY = "query"
    RESPONSE = "response"
    NOTIFICATION = "notification"
    HEARTBEAT = "heartbeat"
    ERROR = "error"


@attrs.frozen
class Channel:
    """A named channel and its type."""

    channel_id: uuid.UUID
    name: str
    channel_type: ChannelType
    description: str | None = None


@attrs.frozen
class Message:
    """A logged message. ``seq`` orders the log; ``to_agent`` is ``None`` for a broadcast."""

    message_id: uuid.UUID
    seq: int
    channel: str
    from_agent: str
    to_agent: str | None
    message_type: MessageType
    subject: str
    payload: Any
    sent_at: float
    correlation_id: uuid.UUID | None = None
    reply_to: str | None = None
    priority: int = 0
    expires_at: float | None = None
    delivered_at: float | None = None
    processed_at: float | None = None
    delivery_attempts: int = 0


@attrs.frozen
class Subscription:
    """An agent's subscription to a channel: its subject ``pattern`` (``None``: every
    subject), and ``from_seq``, the last log position before it began."""

    pattern: str | None
    from_seq: int


@attrs.frozen(kw_only=True)
class MessageDraft:
    """A checked message on its way into a log (its payload encoded once)."""

    channel: str
    from_agent: str
    to_agent: str | None
    message_type: MessageType
    subject: str
    payload: Encoded
    correlation_id: uuid.UUID | None
    reply_to: str | None
    priority: int
    expires_at: float | None

    def check_route(self, channel: Channel) -> None:
        """Refuse the draft on ``channel`` if it cannot be delivered there: a direct channel
        needs a recipient. A store calls this with the channel it read for the write."""
        if channel.channel_type is ChannelType.DIRECT and self.to_agent is None:
            raise InvalidArgument(
                f"channel {channel.name!r} is direct: to_agent is required",
                hint="send(..., to_agent=...) or use a broadcast or topic channel",
            )

    def logged(self, message_id: uuid.UUID, seq: int, sent_at: float, payload: Any) -> Message:
        """The message as a log holds it once appended (``payload``: the decoded JSON)."""
        return Message(
            message_id=message_id,
            seq=seq,
            channel=self.channel,
            from_agent=self.from_agent,
            to_agent=self.to_agent,
            message_type=self.message_type,
            subject=self.subject,
            payload=payload,
            sent_at=sent_at,
            correlation_id=self.correlation_id,
            reply_to=self.reply_to,
            priority=self.priority,
            expires_at=self.expires_at,
        )


def check_channel_name(name: object) -> str:
    if type(name) is not str or not 0 < len(name) <= MAX_NAME or any(c.isspace() for c in name):
        raise InvalidArgument(
            f"channel name must be a non-empty str without whitespace, at most {MAX_NAME} "
            f"characters, got {name!r}"
        )
    return name


def check_channel_type(value: object) -> ChannelType:
    try:
        return ChannelType(value)  # type: ignore[arg-type]
    except ValueError:
        raise InvalidArgument(
            f"channel_type must be one of {', '.join(c.value for c in ChannelType)}, got {value!r}"
        ) from None


def check_pattern(pattern: object) -> str | None:
    """A subscription's subject pattern, or ``None`` (every subject)."""
    if pattern is None:
        return None
    if type(pattern) is not str:
        raise InvalidArgument(f"pattern must be a str or None, got {pattern!r}")
    try:
        return keygrammar.check_pattern(pattern)
    except InvalidArgument as err:
        raise InvalidArgument(f"pattern: {err}") from None


def check_subject(subject: object) -> str:
    if type(subject) is not str or not 0 < len(subject) <= MAX_SUBJECT:
        raise InvalidArgument(
            f"subject must be a non-empty str of at most {MAX_SUBJECT} characters, got {subject!r}"
        )
    try:
        return keygrammar.check_key(subject)
    except InvalidArgument as err:
        raise InvalidArgument(f"subject: {err}") from None


def check_draft(
    channel: object,
    *,
    from_agent: object,
    to_agent: object,
    subject: object,
    payload: Encoded,
    message_type: object,
    correlation_id: object,
    reply_to: object,
    priority: object,
    expires_at: object,
    now: float,
) -> MessageDraft:
    """A message checked field by field (``InvalidArgument`` naming the field)."""
    name = check_channel_name(channel)
    sender = check_agent(from_agent, field="from_agent")
    recipient = None if to_agent is None else check_agent(to_agent, field="to_agent")
    checked_subject = check_subject(subject)
    try:
        kind = MessageType(message_type)  # type: ignore[arg-type]
    except ValueError:
        raise InvalidArgument(
            f"message_type must be one of {', '.join(m.value for m in MessageType)}, got "
            f"{message_type!r}"
        ) from None
    if type(priority) is not int or not 0 <= priority <= MAX_MESSAGE_PRIORITY:
        raise InvalidArgument(
            f"priority must be an int from 0 to {MAX_MESSAGE_PRIORITY}, got {priority!r}"
        )
    expires = check_time(expires_at, field="expires_at", optional=True)
    if expires is not None and expires <= now:
        raise InvalidArgument(f"expires_at must be a future Unix time, got {expires_at!r}")
    if correlation_id is not None:
        check_uuid(correlation_id, field="correlation_id")
    if reply_to is not None and (type(reply_to) is not str or not 0 < len(reply_to) <= MAX_NAME):
        raise InvalidArgument(f"reply_to must be a non-empty str, got {reply_to!r}")
    return MessageDraft(
        channel=name,
        from_agent=sender,
        to_agent=recipient,
        message_type=kind,
        subject=checked_subject,
        payload=payload,
        correlation_id=correlation_id,  # type: ignore[arg-type]  # checked above
        reply_to=reply_to,  # checked above
        priority=priority,
        expires_at=expires,
    )


def addressed_to(
    message: Message, agent: str, subscription: Subscription | None, now: float
) -> bool:
    """Whether ``message`` belongs in ``agent``'s inbox at ``now`` (``subscription``: the
    agent's subscription to the message's channel, if any): unexpired, and sent to the agent,
    or a broadcast logged after the subscription began whose subject matches its pattern."""
    if message.expires_at is not None and message.expires_at <= now:
        return False
    if message.to_agent is not None:
        return message.to_agent == agent
    return (
        subscription is not None
        and message.seq > subscription.from_seq
        and (
            subscription.pattern is None or keygrammar.match(subscription.pattern, message.subject)
        )
    )


def pattern_regex(pattern: str) -> str:
    """``pattern`` (``*`` one token, ``>`` the rest) as an anchored regular expression, for
    stores that match subjects in SQL (PostgreSQL's ``~``)."""
    parts = [
        {"*": "[^.]+", ">": ".+"}.get(token) or re.escape(token) for token in pattern.split(".")
    ]
    return "^" + r"\.".join(parts) + "$"


def no_channel(name: str) -> NotFound:
    """The error for a channel that does not exist."""
    return NotFound(f"no channel {name!r}", key=name, hint="create_channel() it first")


def channel_taken(name: str) -> DuplicateKey:
    """The error for a channel name already taken."""
    return DuplicateKey(f"channel {name!r} exists", key=name)


def no_message(message_id: uuid.UUID) -> NotFound:
    """The error for a message that does not exist."""
    return NotFound(f"no message {message_id}", key=str(message_id))
