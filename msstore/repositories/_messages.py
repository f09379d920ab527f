"""Agent messages: channels, subscriptions, a durable log read through per-agent cursors.

A message goes to one agent (``to_agent``) or to every subscriber of its channel (a broadcast,
or a topic message whose subject matches the subscriber's pattern). Each agent reads its inbox
from a durable cursor: ``inbox`` returns the messages after the cursor, in log order, and counts
the delivery (``delivery_attempts``, ``delivered_at``); ``ack`` moves the cursor past what the
agent has processed (``processed_at``). What was delivered and not acked comes back on the next
read (at-least-once). Request/reply: a request carries a ``correlation_id``; ``reply`` sends
the answer to the requester with the same id; ``replies`` finds them.

Subject patterns use the key grammar's wildcards (:func:`msstore.keys.match`): ``*`` one
token, ``>`` the rest.
"""

from __future__ import annotations

import builtins
import enum
import math
import re
import uuid
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from msstore import keys as keygrammar
from msstore.errors import InvalidArgument

from ._tasks import check_agent

__all__ = [
    "Channel",
    "ChannelType",
    "Message",
    "MessageLog",
    "MessageType",
    "RequestReply",
    "check_channel_name",
    "check_channel_type",
    "check_correlation_id",
    "check_message",
    "check_pattern",
    "matches",
    "pattern_regex",
]

MAX_NAME: Final = 255
MAX_SUBJECT: Final = 255


class ChannelType(enum.StrEnum):
    BROADCAST = "broadcast"
    DIRECT = "direct"
    TOPIC = "topic"
    QUEUE = "queue"


class MessageType(enum.StrEnum):
    COMMAND = "command"
    QUERY = "query"
    RESPONSE = "response"
    NOTIFICATION = "notification"
    HEARTBEAT = "heartbeat"
    ERROR = "error"


@attrs.frozen
class Channel:
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


def pattern_regex(pattern: str) -> str:
    """``pattern`` (``*`` one token, ``>`` the rest) as an anchored regular expression, for
    stores that match subjects in SQL (PostgreSQL's ``~``)."""
    parts = []
    for token in pattern.split("."):
        parts.append({"*": "[^.]+", ">": ".+"}.get(token) or re.escape(token))
    return "^" + r"\.".join(parts) + "$"


def check_pattern(pattern: object) -> str | None:
    if pattern is None:
        return None
    if type(pattern) is not str:
        raise InvalidArgument(f"pattern must be a str or None, got {pattern!r}")
    try:
        return keygrammar.check_pattern(pattern)
    except InvalidArgument as err:
        raise InvalidArgument(f"pattern: {err}") from None


def matches(pattern: str | None, subject: str) -> bool:
    return pattern is None or keygrammar.match(pattern, subject)


def check_message(
    *,
    from_agent: object,
    to_agent: object,
    subject: object,
    message_type: object,
    priority: object,
    expires_at: object,
    correlation_id: object,
    reply_to: object,
    now: float,
) -> tuple[str, str | None, str, MessageType]:
    """The checked sender, recipient, subject and type (``InvalidArgument`` naming the field)."""
    sender = check_agent(from_agent, field="from_agent")
    recipient = None if to_agent is None else check_agent(to_agent, field="to_agent")
    if type(subject) is not str or not 0 < len(subject) <= MAX_SUBJECT:
        raise InvalidArgument(
            f"subject must be a non-empty str of at most {MAX_SUBJECT} characters, got {subject!r}"
        )
    try:
        keygrammar.check_key(subject)
    except InvalidArgument as err:
        raise InvalidArgument(f"subject: {err}") from None
    try:
        kind = MessageType(message_type)  # type: ignore[arg-type]
    except ValueError:
        raise InvalidArgument(
            f"message_type must be one of {', '.join(m.value for m in MessageType)}, got "
            f"{message_type!r}"
        ) from None
    if type(priority) is not int or not 0 <= priority <= 10:
        raise InvalidArgument(f"priority must be an int from 0 to 10, got {priority!r}")
    if expires_at is not None and (
        isinstance(expires_at, bool)
        or not isinstance(expires_at, (int, float))
        or not math.isfinite(expires_at)
        or expires_at <= now
    ):
        raise InvalidArgument(f"expires_at must be a future Unix time, got {expires_at!r}")
    if correlation_id is not None and not isinstance(correlation_id, uuid.UUID):
        raise InvalidArgument(f"correlation_id must be a uuid.UUID, got {correlation_id!r}")
    if reply_to is not None and (type(reply_to) is not str or not 0 < len(reply_to) <= MAX_NAME):
        raise InvalidArgument(f"reply_to must be a non-empty str, got {reply_to!r}")
    return sender, recipient, subject, kind


class RequestReply:
    """``request`` and ``reply`` written once, on top of a store's ``send`` (a mixin for
    :class:`MessageLog` implementations)."""

    def send(
        self,
        channel: str,
        *,
        from_agent: str,
        subject: str,
        payload: Any = None,
        to_agent: str | None = None,
        message_type: MessageType | str = MessageType.NOTIFICATION,
        correlation_id: uuid.UUID | None = None,
        reply_to: str | None = None,
        priority: int = 0,
        expires_at: float | None = None,
    ) -> Message:
        raise NotImplementedError

    def request(
        self,
        channel: str,
        *,
        from_agent: str,
        to_agent: str,
        subject: str,
        payload: Any = None,
    ) -> Message:
        return self.send(
            channel,
            from_agent=from_agent,
            to_agent=to_agent,
            subject=subject,
            payload=payload,
            message_type=MessageType.QUERY,
            correlation_id=uuid.uuid4(),
        )

    def reply(self, request: Message, *, from_agent: str, payload: Any = None) -> Message:
        if not isinstance(request, Message) or request.correlation_id is None:
            raise InvalidArgument(
                f"expected a request Message with a correlation_id, got {request!r}"
            )
        return self.send(
            request.channel,
            from_agent=from_agent,
            to_agent=request.from_agent,
            subject=request.subject,
            payload=payload,
            message_type=MessageType.RESPONSE,
            correlation_id=request.correlation_id,
        )


def check_correlation_id(correlation_id: object) -> uuid.UUID:
    if not isinstance(correlation_id, uuid.UUID):
        raise InvalidArgument(f"correlation_id must be a uuid.UUID, got {correlation_id!r}")
    return correlation_id


@runtime_checkable
class MessageLog(Protocol):
    """Channels, subscriptions and the message log (memory:
    :class:`~msstore.backends.memory.MemoryMessageLog`, PostgreSQL:
    :class:`~msstore.backends.postgres.PostgresMessageLog`). Bad input raises
    ``InvalidArgument`` naming the field and writes nothing; an unknown channel ``NotFound``;
    a channel name taken ``DuplicateKey``."""

    def create_channel(
        self, name: str, channel_type: ChannelType | str, *, description: str | None = None
    ) -> Channel: ...

    def channel(self, name: str) -> Channel | None: ...

    def subscribe(self, agent_id: str, channel: str, *, pattern: str | None = None) -> None:
        """Deliver ``channel``'s broadcasts (and topic messages whose subject matches
        ``pattern``; ``None``: all) to ``agent_id``'s inbox, from now on."""
        ...

    def unsubscribe(self, agent_id: str, channel: str) -> bool: ...

    def send(
        self,
        channel: str,
        *,
        from_agent: str,
        subject: str,
        payload: Any = None,
        to_agent: str | None = None,
        message_type: MessageType | str = MessageType.NOTIFICATION,
        correlation_id: uuid.UUID | None = None,
        reply_to: str | None = None,
        priority: int = 0,
        expires_at: float | None = None,
    ) -> Message:
        """Log a message: to ``to_agent`` (required on a direct channel), else to the
        channel's subscribers. ``priority`` 0-10."""
        ...

    def inbox(self, agent_id: str, *, limit: int = 100) -> builtins.list[Message]:
        """Messages for ``agent_id`` after its cursor, in log order, unexpired; each read is a
        delivery (at-least-once: they come back until acked)."""
        ...

    def ack(self, agent_id: str, message: Message) -> None:
        """``agent_id`` processed ``message`` and everything before it in its inbox."""
        ...

    def request(
        self,
        channel: str,
        *,
        from_agent: str,
        to_agent: str,
        subject: str,
        payload: Any = None,
    ) -> Message:
        """Send a query with a new ``correlation_id``; answers come through :meth:`reply`."""
        ...

    def reply(self, request: Message, *, from_agent: str, payload: Any = None) -> Message:
        """Answer ``request``: a response to its sender, with its ``correlation_id``."""
        ...

    def replies(self, correlation_id: uuid.UUID) -> builtins.list[Message]:
        """The responses logged for ``correlation_id``, in log order."""
        ...

    def close(self) -> None: ...
