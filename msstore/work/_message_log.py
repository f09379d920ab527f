"""The message log: its protocol, and the base class every implementation builds on.

:class:`MessageLogBase` checks every argument, encodes payloads once, and writes request/reply
on top of ``send``; an implementation supplies the primitives listed in its docstring.
"""

from __future__ import annotations

import builtins
import uuid
from typing import Any, Protocol, runtime_checkable

from msstore.codec import Codec, default_codec
from msstore.errors import InvalidArgument
from msstore.protocols import Store
from msstore.spi import StoreBase

from ._checks import check_agent, check_limit, check_uuid
from ._messages import (
    Channel,
    ChannelType,
    Message,
    MessageDraft,
    MessageType,
    check_channel_name,
    check_channel_type,
    check_draft,
    check_pattern,
)

__all__ = ["MessageLog", "MessageLogBase"]


@runtime_checkable
class MessageLog(Store, Protocol):
    """Channels, subscriptions and the message log (memory:
    :class:`~msstore.backends.memory.MemoryMessageLog`, PostgreSQL:
    :class:`~msstore.backends.postgres.PostgresMessageLog`). Bad input raises
    ``InvalidArgument`` naming the field and writes nothing; an unknown channel ``NotFound``;
    a channel name taken ``DuplicateKey``."""

    def create_channel(
        self, name: str, channel_type: ChannelType | str, *, description: str | None = None
    ) -> Channel:
        """A new channel (``DuplicateKey`` if the name is taken)."""

    def channel(self, name: str) -> Channel | None:
        """The channel called ``name``, or ``None``."""

    def subscribe(self, agent_id: str, channel: str, *, pattern: str | None = None) -> None:
        """Deliver ``channel``'s broadcasts (and topic messages whose subject matches
        ``pattern``; ``None``: all) to ``agent_id``'s inbox, from now on. Subscribing again
        replaces the pattern and starts again from now."""

    def unsubscribe(self, agent_id: str, channel: str) -> bool:
        """End ``agent_id``'s subscription to ``channel``; ``False`` if it had none."""

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
        channel's subscribers. ``priority`` 0-10; ``expires_at``: not delivered after (Unix
        seconds); ``subject``: dot-separated tokens, matched by subscribers' patterns."""

    def inbox(self, agent_id: str, *, limit: int = 100) -> builtins.list[Message]:
        """Messages for ``agent_id`` after its cursor, in log order, unexpired, at most
        ``limit`` (1-1000); each read is a delivery (at-least-once: they come back until
        acked)."""

    def ack(self, agent_id: str, message: Message) -> None:
        """``agent_id`` processed ``message`` and everything before it in its inbox
        (``NotFound`` for a message the log does not hold)."""

    def request(
        self, channel: str, *, from_agent: str, to_agent: str, subject: str, payload: Any = None
    ) -> Message:
        """Send a query with a new ``correlation_id``; answers come through :meth:`reply`."""

    def reply(self, request: Message, *, from_agent: str, payload: Any = None) -> Message:
        """Answer ``request``: a response to its sender, with its ``correlation_id``."""

    def replies(self, correlation_id: uuid.UUID) -> builtins.list[Message]:
        """The responses logged for ``correlation_id``, in log order."""


class MessageLogBase(StoreBase, MessageLog):
    """Everything a message log does but storing messages.

    **Implementing a log.** Subclass this and supply, each atomic:

    * :meth:`_now`: the log's clock (Unix seconds).
    * :meth:`_create_channel`, :meth:`_channel`: channels by name.
    * :meth:`_subscribe`, :meth:`_unsubscribe`: an agent's subscription to a channel.
    * :meth:`_append`: log a checked message.
    * :meth:`_inbox`: an agent's messages after its cursor, each read counted.
    * :meth:`_ack`: move an agent's cursor.
    * :meth:`_replies`: responses by correlation id.
    * :meth:`_release` (from :class:`~msstore.spi.StoreBase`): free resources.

    Who reads a message is :func:`~msstore.work.addressed_to`; the conformance suite
    (:class:`~msstore.testing.conformance.MessageLogConformance`) checks the rest.
    """

    def __init__(self, *, codec: Codec | None = None) -> None:
        self._codec = codec or default_codec

    def create_channel(
        self, name: str, channel_type: ChannelType | str, *, description: str | None = None
    ) -> Channel:
        check_channel_name(name)
        kind = check_channel_type(channel_type)
        if description is not None and type(description) is not str:
            raise InvalidArgument(f"description must be a str or None, got {description!r}")
        self._check_open()
        return self._create_channel(name, kind, description)

    def channel(self, name: str) -> Channel | None:
        check_channel_name(name)
        self._check_open()
        return self._channel(name)

    def subscribe(self, agent_id: str, channel: str, *, pattern: str | None = None) -> None:
        agent = check_agent(agent_id)
        check_channel_name(channel)
        checked = check_pattern(pattern)
        self._check_open()
        self._subscribe(agent, channel, checked)

    def unsubscribe(self, agent_id: str, channel: str) -> bool:
        agent = check_agent(agent_id)
        check_channel_name(channel)
        self._check_open()
        return self._unsubscribe(agent, channel)

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
        draft = check_draft(
            channel,
            from_agent=from_agent,
            to_agent=to_agent,
            subject=subject,
            payload=self._codec.encode_canonical({} if payload is None else payload),
            message_type=message_type,
            correlation_id=correlation_id,
            reply_to=reply_to,
            priority=priority,
            expires_at=expires_at,
            now=self._now(),
        )
        self._check_open()
        return self._append(draft)

    def inbox(self, agent_id: str, *, limit: int = 100) -> builtins.list[Message]:
        agent = check_agent(agent_id)
        check_limit(limit)
        self._check_open()
        return self._inbox(agent, limit, self._now())

    def ack(self, agent_id: str, message: Message) -> None:
        agent = check_agent(agent_id)
        if not isinstance(message, Message):
            raise InvalidArgument(f"expected a Message (from inbox()), got {message!r}")
        self._check_open()
        self._ack(agent, message)

    def request(
        self, channel: str, *, from_agent: str, to_agent: str, subject: str, payload: Any = None
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

    def replies(self, correlation_id: uuid.UUID) -> builtins.list[Message]:
        check_uuid(correlation_id, field="correlation_id")
        self._check_open()
        return self._replies(correlation_id)

    # The primitives --------------------------------------------------------------------------

    def _now(self) -> float:
        """The log's clock, Unix seconds."""
        raise NotImplementedError

    def _create_channel(self, name: str, kind: ChannelType, description: str | None) -> Channel:
        """Create the channel, or raise ``channel_taken(name)``."""
        raise NotImplementedError

    def _channel(self, name: str) -> Channel | None:
        raise NotImplementedError

    def _subscribe(self, agent: str, channel: str, pattern: str | None) -> None:
        """Subscribe (or re-subscribe) ``agent`` from the log's current end (``no_channel``
        if the channel does not exist)."""
        raise NotImplementedError

    def _unsubscribe(self, agent: str, channel: str) -> bool:
        """End the subscription; whether there was one (``no_channel`` as above)."""
        raise NotImplementedError

    def _append(self, draft: MessageDraft) -> Message:
        """Read ``draft.channel`` (``no_channel`` if none), call ``draft.check_route`` with
        it, and append the message at the end of the log; return it as logged."""
        raise NotImplementedError

    def _inbox(self, agent: str, limit: int, now: float) -> builtins.list[Message]:
        """The first ``limit`` messages after ``agent``'s cursor, in log order, that are
        :func:`~msstore.work.addressed_to` it; each gets ``delivery_attempts`` + 1 and a
        ``delivered_at`` (the first time). Return them as changed."""
        raise NotImplementedError

    def _ack(self, agent: str, message: Message) -> None:
        """``no_message`` if the log does not hold ``message``; else move ``agent``'s cursor
        to its ``seq`` (never back) and, if it was sent to ``agent``, set its
        ``processed_at`` (once)."""
        raise NotImplementedError

    def _replies(self, correlation_id: uuid.UUID) -> builtins.list[Message]:
        """Messages of type ``response`` with ``correlation_id``, in log order."""
        raise NotImplementedError
