"""The message log in process memory: :class:`~msstore.work.MessageLogBase`'s primitives."""

from __future__ import annotations

import builtins
import threading
import time
import uuid
from collections.abc import Callable

import attrs

from msstore.codec import Codec
from msstore.work import (
    Channel,
    ChannelType,
    Message,
    MessageDraft,
    MessageLogBase,
    MessageType,
    Subscription,
    addressed_to,
    channel_taken,
    no_channel,
    no_message,
)

__all__ = ["MemoryMessageLog"]


class MemoryMessageLog(MessageLogBase):
    """``MessageLog`` in memory (thread-safe); ``clock`` returns Unix seconds."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, codec: Codec | None = None
    ) -> None:
        super().__init__(codec=codec)
        self._clock = clock
        self._lock = threading.Lock()
        self._channels: dict[str, Channel] = {}
        self._subs: dict[tuple[str, str], Subscription] = {}  # (agent, channel) -> subscription
        self._log: list[Message] = []
        self._cursors: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"MemoryMessageLog({len(self._log)} messages)"

    def _now(self) -> float:
        return self._clock()

    def _named(self, name: str) -> Channel:
        found = self._channels.get(name)
        if found is None:
            raise no_channel(name)
        return found

    def _create_channel(self, name: str, kind: ChannelType, description: str | None) -> Channel:
        with self._lock:
            if name in self._channels:
                raise channel_taken(name)
            channel = Channel(uuid.uuid4(), name, kind, description)
            self._channels[name] = channel
            return channel

    def _channel(self, name: str) -> Channel | None:
        with self._lock:
            return self._channels.get(name)

    def _subscribe(self, agent: str, channel: str, pattern: str | None) -> None:
        with self._lock:
            self._named(channel)
            self._subs[(agent, channel)] = Subscription(pattern, len(self._log))

    def _unsubscribe(self, agent: str, channel: str) -> bool:
        with self._lock:
            self._named(channel)
            return self._subs.pop((agent, channel), None) is not None

    def _append(self, draft: MessageDraft) -> Message:
        payload = self._codec.decode(draft.payload.data)
        with self._lock:
            draft.check_route(self._named(draft.channel))
            message = draft.logged(uuid.uuid4(), len(self._log) + 1, self._clock(), payload)
            self._log.append(message)
            return message

    def _inbox(self, agent: str, limit: int, now: float) -> builtins.list[Message]:
        with self._lock:
            out: builtins.list[Message] = []
            for message in self._log[self._cursors.get(agent, 0) :]:
                if len(out) == limit:
                    break
                if addressed_to(message, agent, self._subs.get((agent, message.channel)), now):
                    delivered = attrs.evolve(
                        message,
                        delivered_at=message.delivered_at or now,
                        delivery_attempts=message.delivery_attempts + 1,
                    )
                    self._log[message.seq - 1] = delivered
                    out.append(delivered)
            return out

    def _ack(self, agent: str, message: Message) -> None:
        with self._lock:
            if not 0 < message.seq <= len(self._log):
                raise no_message(message.message_id)
            logged = self._log[message.seq - 1]
            if logged.message_id != message.message_id:
                raise no_message(message.message_id)
            self._cursors[agent] = max(self._cursors.get(agent, 0), message.seq)
            if logged.to_agent == agent and logged.processed_at is None:
                self._log[message.seq - 1] = attrs.evolve(logged, processed_at=self._clock())

    def _replies(self, correlation_id: uuid.UUID) -> builtins.list[Message]:
        with self._lock:
            return [
                m
                for m in self._log
                if m.correlation_id == correlation_id and m.message_type is MessageType.RESPONSE
            ]
