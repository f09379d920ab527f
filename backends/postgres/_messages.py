"""``MessageLog`` on messages.channels, .subscriptions, .log and .cursors (0005, 0018):
:class:`~msstore.work.MessageLogBase`'s primitives.

An inbox read is one statement: the agent's messages after its cursor (direct ones, and the
broadcasts of channels it subscribes to whose subject matches its pattern), in ``seq`` order,
each counted as a delivery. Agents are registered (agents.registry) on first use; their tokens
come back through the registry's ``agent_name``.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

from psycopg_pool import ConnectionPool

from msstore.codec import Codec
from msstore.work import (
    Channel,
    ChannelType,
    Message,
    MessageDraft,
    MessageLogBase,
    MessageType,
    channel_taken,
    no_channel,
    no_message,
    pattern_regex,
)

from ._agents import AgentRegistrar, agent_of_token
from ._base import NOW, Conn, PgStore, timestamp
from ._config import DEFAULT_CONNECT_TIMEOUT
from ._jsonb import jsonb_text

__all__ = ["PostgresMessageLog"]

MESSAGE_COLUMNS: Final = """
  l.message_id, l.seq, c.channel_name, f.agent_name, t.agent_name, l.message_type::text,
  l.subject, l.payload, extract(epoch FROM l.sent_at)::float8, l.correlation_id, l.reply_to,
  l.priority, extract(epoch FROM l.expires_at)::float8, extract(epoch FROM l.delivered_at)::float8,
  extract(epoch FROM l.processed_at)::float8, l.delivery_attempts
"""
JOINS: Final = """
  JOIN messages.channels c ON c.channel_id = l.channel_id
  JOIN agents.registry f ON f.agent_id = l.from_agent_id
  LEFT JOIN agents.registry t ON t.agent_id = l.to_agent_id
"""
INBOX: Final = f"""
WITH now AS (SELECT {NOW} AS t),
cur AS (SELECT COALESCE(max(acked_seq), 0) AS s FROM messages.cursors WHERE agent_id = %(aid)s),
mine AS (
  SELECT l.message_id, l.sent_at FROM messages.log l, cur, now
  WHERE l.seq > cur.s AND (l.expires_at IS NULL OR l.expires_at > now.t)
    AND (l.to_agent_id = %(aid)s OR (l.to_agent_id IS NULL AND EXISTS (
      SELECT 1 FROM messages.subscriptions s
      WHERE s.agent_id = %(aid)s AND s.channel_id = l.channel_id AND s.is_active
        AND l.seq > s.from_seq
        AND (s.filters->>'regex' IS NULL OR l.subject ~ (s.filters->>'regex')))))
  ORDER BY l.seq
  LIMIT %(limit)s
),
l AS (
  UPDATE messages.log l SET delivered_at = COALESCE(l.delivered_at, now.t),
    delivery_attempts = l.delivery_attempts + 1
  FROM mine, now WHERE l.message_id = mine.message_id AND l.sent_at = mine.sent_at
  RETURNING l.*
)
SELECT {MESSAGE_COLUMNS} FROM l {JOINS} ORDER BY l.seq
"""
SEND: Final = f"""
INSERT INTO messages.log AS l (channel_id, from_agent_id, to_agent_id, broadcast_to_type,
  message_type, subject, payload, correlation_id, reply_to, priority, expires_at, sent_at)
VALUES (%(channel_id)s, %(from_id)s, %(to_id)s, %(broadcast)s, %(type)s::message_type,
  %(subject)s, %(payload)s::jsonb, %(correlation_id)s, %(reply_to)s, %(priority)s,
  %(expires)s, {NOW})
RETURNING l.message_id, l.seq, extract(epoch FROM l.sent_at)::float8
"""


def _message(row: Sequence[Any]) -> Message:
    return Message(
        message_id=row[0],
        seq=row[1],
        channel=row[2],
        from_agent=row[3],
        to_agent=row[4],
        message_type=MessageType(row[5]),
        subject=row[6],
        payload=row[7],
        sent_at=row[8],
        correlation_id=row[9],
        reply_to=row[10],
        priority=row[11],
        expires_at=row[12],
        delivered_at=row[13],
        processed_at=row[14],
        delivery_attempts=row[15],
    )


class PostgresMessageLog(PgStore, MessageLogBase):
    """``MessageLog`` on PostgreSQL (migrations 0005 and 0018). ``pool``: a pool or a DSN;
    ``clock``: Unix seconds for every time the log records (default: the server's clock)."""

    def __init__(
        self,
        pool: ConnectionPool[Any] | str,
        *,
        clock: Callable[[], float] | None = None,
        codec: Codec | None = None,
        deadline: float | None = 15.0,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        MessageLogBase.__init__(self, codec=codec)
        self._adopt(
            pool, name="msstore-messages", connect_timeout=connect_timeout, deadline=deadline
        )
        self._clock = clock
        self._registrar = AgentRegistrar()

    def _agents(self, *tokens: str | None) -> None:
        """Register the agents a write is about to reference (committed before it)."""
        self._registrar.ensure(lambda fn: self._run_statement("register agents", fn), tokens)

    @staticmethod
    def _find_channel(c: Conn, name: str, *, lock: bool = False) -> Channel | None:
        """The channel, or ``None``; ``lock``: held (shared) until the transaction ends."""
        row = c.execute(
            "SELECT channel_id, channel_type, description FROM messages.channels "
            "WHERE channel_name = %s" + (" FOR SHARE" if lock else ""),
            [name],
        ).fetchone()
        return None if row is None else Channel(row[0], name, ChannelType(row[1]), row[2])

    def _channel_row(self, c: Conn, name: str, *, lock: bool = False) -> Channel:
        found = self._find_channel(c, name, lock=lock)
        if found is None:
            raise no_channel(name)
        return found

    def _create_channel(self, name: str, kind: ChannelType, description: str | None) -> Channel:
        def create(c: Conn) -> Channel:
            row = c.execute(
                "INSERT INTO messages.channels (channel_name, channel_type, description) "
                "VALUES (%s, %s, %s) ON CONFLICT (channel_name) DO NOTHING RETURNING channel_id",
                [name, kind.value, description],
            ).fetchone()
            if row is None:
                raise channel_taken(name)
            return Channel(row[0], name, kind, description)

        result: Channel = self._run_transaction("create channel", create)
        return result

    def _channel(self, name: str) -> Channel | None:
        result: Channel | None = self._run_transaction(
            "read channel", lambda c: self._find_channel(c, name), write=False
        )
        return result

    def _subscribe(self, agent: str, channel: str, pattern: str | None) -> None:
        regex = None if pattern is None else pattern_regex(pattern)
        self._agents(agent)

        def subscribe(c: Conn) -> None:
            channel_id = self._channel_row(c, channel, lock=True).channel_id
            aid = agent_of_token(agent)
            c.execute(
                "DELETE FROM messages.subscriptions WHERE agent_id = %s AND channel_id = %s",
                [aid, channel_id],
            )
            c.execute(
                "INSERT INTO messages.subscriptions (agent_id, channel_id, message_pattern, "
                "filters, from_seq) VALUES (%s, %s, %s, %s::jsonb, "
                "(SELECT COALESCE(max(seq), 0) FROM messages.log))",
                [aid, channel_id, pattern, "{}" if regex is None else jsonb_text({"regex": regex})],
            )

        self._run_transaction("subscribe", subscribe)

    def _unsubscribe(self, agent: str, channel: str) -> bool:
        def unsubscribe(c: Conn) -> bool:
            channel_id = self._channel_row(c, channel).channel_id
            return (
                c.execute(
                    "DELETE FROM messages.subscriptions WHERE agent_id = %s AND channel_id = %s",
                    [agent_of_token(agent), channel_id],
                ).rowcount
                > 0
            )

        result: bool = self._run_transaction("unsubscribe", unsubscribe)
        return result

    def _append(self, draft: MessageDraft) -> Message:
        text = jsonb_text(draft.payload, self._codec)
        payload = self._codec.decode(draft.payload.data)
        self._agents(draft.from_agent, draft.to_agent)

        def send(c: Conn) -> Message:
            channel = self._channel_row(c, draft.channel, lock=True)
            draft.check_route(channel)
            row = c.execute(
                SEND,
                {
                    "now": self._now_param(),
                    "channel_id": channel.channel_id,
                    "from_id": agent_of_token(draft.from_agent),
                    "to_id": None if draft.to_agent is None else agent_of_token(draft.to_agent),
                    "broadcast": "subscribers" if draft.to_agent is None else None,
                    "type": draft.message_type.value,
                    "subject": draft.subject,
                    "payload": text,
                    "correlation_id": draft.correlation_id,
                    "reply_to": draft.reply_to,
                    "priority": draft.priority,
                    "expires": timestamp(draft.expires_at),
                },
            ).fetchone()
            assert row is not None
            return draft.logged(row[0], row[1], row[2], payload)

        result: Message = self._run_transaction("send", send)
        return result

    def _inbox(self, agent: str, limit: int, now: float) -> builtins.list[Message]:
        params = {"now": self._now_param(), "aid": agent_of_token(agent), "limit": limit}

        def read(c: Conn) -> builtins.list[Message]:
            return [_message(r) for r in c.execute(INBOX, params).fetchall()]

        result: builtins.list[Message] = self._run_statement("inbox", read)
        return result

    def _ack(self, agent: str, message: Message) -> None:
        aid = agent_of_token(agent)
        self._agents(agent)

        def ack(c: Conn) -> None:
            found = c.execute(
                "SELECT 1 FROM messages.log WHERE message_id = %s AND seq = %s",
                [message.message_id, message.seq],
            ).fetchone()
            if found is None:
                raise no_message(message.message_id)
            c.execute(
                "INSERT INTO messages.cursors AS k (agent_id, acked_seq) VALUES (%s, %s) "
                "ON CONFLICT (agent_id) DO UPDATE SET acked_seq = GREATEST(k.acked_seq, "
                "EXCLUDED.acked_seq), updated_at = now()",
                [aid, message.seq],
            )
            c.execute(
                f"UPDATE messages.log SET processed_at = {NOW} WHERE message_id = %(id)s "
                "AND to_agent_id = %(aid)s AND processed_at IS NULL",
                {"now": self._now_param(), "id": message.message_id, "aid": aid},
            )

        self._run_transaction("ack", ack)

    def _replies(self, correlation_id: uuid.UUID) -> builtins.list[Message]:
        def read(c: Conn) -> builtins.list[Message]:
            rows = c.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages.log l {JOINS} "
                "WHERE l.correlation_id = %s AND l.message_type = 'response' ORDER BY l.seq",
                [correlation_id],
            ).fetchall()
            return [_message(r) for r in rows]

        result: builtins.list[Message] = self._run_transaction("replies", read, write=False)
        return result
