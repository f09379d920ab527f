"""The message log in process memory (the rules of :mod:`msstore.repositories._messages`)."""

from __future__ import annotations

import builtins
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from msstore.codec import Codec, default_codec
from msstore.errors import DuplicateKey, InvalidArgument, NotFound, StoreClosed
from msstore.repositories._messages import (
    Channel,
    ChannelType,
    Message,
    MessageType,
    RequestReply,
    check_channel_name,
    check_channel_type,
    check_correlation_id,
    check_message,
    check_pattern,
    matches,
)
from msstore.repositories._tasks import check_agent, check_limit

__all__ = ["MemoryMessageLog"]


class MemoryMessageLog(RequestReply):
    """``MessageLog`` in memory (thread-safe); ``clock`` returns Unix seconds."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, codec: Codec | None = None
    ) -> None:
        self._clock = clock
        self._codec = codec or default_codec
        self._lock = threading.Lock()
        self._channels: dict[str, Channel] = {}
        self._subs: dict[
            tuple[str, str], tuple[str | None, int]
        ] = {}  # (agent, chan) -> pattern, from seq
        self._log: list[Message] = []
        self._cursors: dict[str, int] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("this message log is closed", hint="open a new one")

    def _channel(self, name: str) -> Channel:
        found = self._channels.get(check_channel_name(name))
        if found is None:
            raise NotFound(f"no channel {name!r}", key=name)
        return found

    def create_channel(
        self, name: str, channel_type: ChannelType | str, *, description: str | None = None
    ) -> Channel:
        check_channel_name(name)
        kind = check_channel_type(channel_type)
        if description is not None and type(description) is not str:
            raise InvalidArgument(f"description must be a str or None, got {description!r}")
        with self._lock:
            self._check_open()
            if name in self._channels:
                raise DuplicateKey(f"channel {name!r} exists", key=name)
            channel = Channel(uuid.uuid4(), name, kind, description)
            self._channels[name] = channel
            return channel

    def channel(self, name: str) -> Channel | None:
        with self._lock:
            return self._channels.get(check_channel_name(name))

    def subscribe(self, agent_id: str, channel: str, *, pattern: str | None = None) -> None:
        agent = check_agent(agent_id)
        checked = check_pattern(pattern)
        with self._lock:
            self._check_open()
            self._channel(channel)
            self._subs[(agent, channel)] = (checked, len(self._log))

    def unsubscribe(self, agent_id: str, channel: str) -> bool:
        agent = check_agent(agent_id)
        with self._lock:
            self._channel(channel)
            return self._subs.pop((agent, channel), None) is not None

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
        now = self._clock()
        sender, recipient, subject, kind = check_message(
            from_agent=from_agent,
            to_agent=to_agent,
            subject=subject,
            message_type=message_type,
            priority=priority,
            expires_at=expires_at,
            correlation_id=correlation_id,
            reply_to=reply_to,
            now=now,
        )
        value = self._codec.decode(self._codec.encode({} if payload is None else payload))
        with self._lock:
            self._check_open()
            chan = self._channel(channel)
            if chan.channel_type is ChannelType.DIRECT and recipient is None:
                raise InvalidArgument(f"channel {channel!r} is direct: to_agent is required")
            message = Message(
                message_id=uuid.uuid4(),
                seq=len(self._log) + 1,
                channel=channel,
                from_agent=sender,
                to_agent=recipient,
                message_type=kind,
                subject=subject,
                payload=value,
                sent_at=now,
                correlation_id=correlation_id,
                reply_to=reply_to,
                priority=priority,
                expires_at=None if expires_at is None else float(expires_at),
            )
            self._log.append(message)
            return message

    def _for(self, agent: str, message: Message, now: float) -> bool:
        if message.expires_at is not None and message.expires_at <= now:
            return False
        if message.to_agent is not None:
            return message.to_agent == agent
        sub = self._subs.get((agent, message.channel))
        return sub is not None and message.seq > sub[1] and matches(sub[0], message.subject)

    def inbox(self, agent_id: str, *, limit: int = 100) -> builtins.list[Message]:
        agent = check_agent(agent_id)
        check_limit(limit)
        with self._lock:
            self._check_open()
            now = self._clock()
            after = self._cursors.get(agent, 0)
            out: builtins.list[Message] = []
            for message in self._log[after:]:
                if len(out) == limit:
                    break
                if self._for(agent, message, now):
                    delivered = attrs.evolve(
                        message,
                        delivered_at=message.delivered_at or now,
                        delivery_attempts=message.delivery_attempts + 1,
                    )
                    self._log[message.seq - 1] = delivered
                    out.append(delivered)
            return out

    def ack(self, agent_id: str, message: Message) -> None:
        agent = check_agent(agent_id)
        if not isinstance(message, Message):
            raise InvalidArgument(f"expected a Message, got {message!r}")
        with self._lock:
            self._check_open()
            if not 0 < message.seq <= len(self._log):
                raise NotFound(f"no message {message.message_id}")
            self._cursors[agent] = max(self._cursors.get(agent, 0), message.seq)
            logged = self._log[message.seq - 1]
            if logged.to_agent == agent and logged.processed_at is None:
                self._log[message.seq - 1] = attrs.evolve(logged, processed_at=self._clock())

    def replies(self, correlation_id: uuid.UUID) -> builtins.list[Message]:
        check_correlation_id(correlation_id)
        with self._lock:
            return [
                m
                for m in self._log
                if m.correlation_id == correlation_id and m.message_type is MessageType.RESPONSE
            ]

    def close(self) -> None:
        self._closed = True
