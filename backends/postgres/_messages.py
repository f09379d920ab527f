"""``MessageLog`` on messages.channels, .subscriptions, .log and .cursors (0005, 0018).

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

from msstore.codec import Codec, default_codec
from msstore.errors import DuplicateKey, InvalidArgument, NotFound
from msstore.registry import redact_url
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
    pattern_regex,
)
from msstore.repositories._tasks import check_agent, check_limit
from msstore.spi import StoreBase

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


class PostgresMessageLog(RequestReply, PgStore, StoreBase):
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
        self._adopt(
            pool, name="msstore-messages", connect_timeout=connect_timeout, deadline=deadline
        )
        self._clock = clock
        self._codec = codec or default_codec
        self._registrar = AgentRegistrar()

    def __repr__(self) -> str:
        return f"PostgresMessageLog({redact_url(self._dsn)})"

    def _agents(self, *tokens: str | None) -> None:
        """Register the agents a write is about to reference (committed before it)."""
        self._registrar.ensure(lambda fn: self._run_statement("register agents", fn), tokens)

    @staticmethod
    def _channel_row(c: Conn, name: str, *, lock: bool = False) -> tuple[uuid.UUID, str]:
        row = c.execute(
            "SELECT channel_id, channel_type FROM messages.channels WHERE channel_name = %s"
            + (" FOR SHARE" if lock else ""),
            [name],
        ).fetchone()
        if row is None:
            raise NotFound(f"no channel {name!r}", key=name)
        return row[0], row[1]

    def create_channel(
        self, name: str, channel_type: ChannelType | str, *, description: str | None = None
    ) -> Channel:
        check_channel_name(name)
        kind = check_channel_type(channel_type)
        if description is not None and type(description) is not str:
            raise InvalidArgument(f"description must be a str or None, got {description!r}")
        self._check_open()

        def create(c: Conn) -> Channel:
            row = c.execute(
                "INSERT INTO messages.channels (channel_name, channel_type, description) "
                "VALUES (%s, %s, %s) ON CONFLICT (channel_name) DO NOTHING RETURNING channel_id",
                [name, kind.value, description],
            ).fetchone()
            if row is None:
                raise DuplicateKey(f"channel {name!r} exists", key=name)
            return Channel(row[0], name, kind, description)

        result: Channel = self._run_transaction("create channel", create)
        return result

    def channel(self, name: str) -> Channel | None:
        check_channel_name(name)
        self._check_open()

        def read(c: Conn) -> Channel | None:
            row = c.execute(
                "SELECT channel_id, channel_type, description FROM messages.channels "
                "WHERE channel_name = %s",
                [name],
            ).fetchone()
            c.rollback()
            return None if row is None else Channel(row[0], name, ChannelType(row[1]), row[2])

        result: Channel | None = self._run("read channel", read)
        return result

    def subscribe(self, agent_id: str, channel: str, *, pattern: str | None = None) -> None:
        agent = check_agent(agent_id)
        check_channel_name(channel)
        checked = check_pattern(pattern)
        regex = None if checked is None else pattern_regex(checked)
        self._check_open()

        self._agents(agent)

        def subscribe(c: Conn) -> None:
            channel_id, _ = self._channel_row(c, channel, lock=True)
            aid = agent_of_token(agent)
            c.execute(
                "DELETE FROM messages.subscriptions WHERE agent_id = %s AND channel_id = %s",
                [aid, channel_id],
            )
            c.execute(
                "INSERT INTO messages.subscriptions (agent_id, channel_id, message_pattern, "
                "filters, from_seq) VALUES (%s, %s, %s, %s::jsonb, "
                "(SELECT COALESCE(max(seq), 0) FROM messages.log))",
                [aid, channel_id, checked, "{}" if regex is None else jsonb_text({"regex": regex})],
            )

        self._run_transaction("subscribe", subscribe)

    def unsubscribe(self, agent_id: str, channel: str) -> bool:
        agent = check_agent(agent_id)
        check_channel_name(channel)
        self._check_open()

        def unsubscribe(c: Conn) -> bool:
            channel_id, _ = self._channel_row(c, channel)
            return (
                c.execute(
                    "DELETE FROM messages.subscriptions WHERE agent_id = %s AND channel_id = %s",
                    [agent_of_token(agent), channel_id],
                ).rowcount
                > 0
            )

        result: bool = self._run_transaction("unsubscribe", unsubscribe)
        return result

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
        now_s = self._now_seconds()
        sender, recipient, subject, kind = check_message(
            from_agent=from_agent,
            to_agent=to_agent,
            subject=subject,
            message_type=message_type,
            priority=priority,
            expires_at=expires_at,
            correlation_id=correlation_id,
            reply_to=reply_to,
            now=now_s,
        )
        check_channel_name(channel)
        value = {} if payload is None else payload
        text = jsonb_text(value, self._codec)
        self._check_open()

        self._agents(sender, recipient)

        def send(c: Conn) -> Message:
            channel_id, channel_type = self._channel_row(c, channel, lock=True)
            if channel_type == ChannelType.DIRECT and recipient is None:
                raise InvalidArgument(f"channel {channel!r} is direct: to_agent is required")
            row = c.execute(
                SEND,
                {
                    "now": self._now(),
                    "channel_id": channel_id,
                    "from_id": agent_of_token(sender),
                    "to_id": None if recipient is None else agent_of_token(recipient),
                    "broadcast": "subscribers" if recipient is None else None,
                    "type": kind.value,
                    "subject": subject,
                    "payload": text,
                    "correlation_id": correlation_id,
                    "reply_to": reply_to,
                    "priority": priority,
                    "expires": timestamp(None if expires_at is None else float(expires_at)),
                },
            ).fetchone()
            assert row is not None
            return Message(
                message_id=row[0],
                seq=row[1],
                channel=channel,
                from_agent=sender,
                to_agent=recipient,
                message_type=kind,
                subject=subject,
                payload=self._codec.decode(self._codec.encode(value)),
                sent_at=row[2],
                correlation_id=correlation_id,
                reply_to=reply_to,
                priority=priority,
                expires_at=None if expires_at is None else float(expires_at),
            )

        result: Message = self._run_transaction("send", send)
        return result

    def inbox(self, agent_id: str, *, limit: int = 100) -> builtins.list[Message]:
        agent = check_agent(agent_id)
        check_limit(limit)
        self._check_open()
        params = {"now": self._now(), "aid": agent_of_token(agent), "limit": limit}

        def read(c: Conn) -> builtins.list[Message]:
            return [_message(r) for r in c.execute(INBOX, params).fetchall()]

        result: builtins.list[Message] = self._run_statement("inbox", read)
        return result

    def ack(self, agent_id: str, message: Message) -> None:
        agent = check_agent(agent_id)
        if not isinstance(message, Message):
            raise InvalidArgument(f"expected a Message, got {message!r}")
        self._check_open()
        aid = agent_of_token(agent)

        self._agents(agent)

        def ack(c: Conn) -> None:
            if (
                c.execute(
                    "SELECT 1 FROM messages.log WHERE message_id = %s", [message.message_id]
                ).fetchone()
                is None
            ):
                raise NotFound(f"no message {message.message_id}")
            c.execute(
                "INSERT INTO messages.cursors AS k (agent_id, acked_seq) VALUES (%s, %s) "
                "ON CONFLICT (agent_id) DO UPDATE SET acked_seq = GREATEST(k.acked_seq, "
                "EXCLUDED.acked_seq), updated_at = now()",
                [aid, message.seq],
            )
            c.execute(
                f"UPDATE messages.log SET processed_at = {NOW} WHERE message_id = %(id)s "
                "AND to_agent_id = %(aid)s AND processed_at IS NULL",
                {"now": self._now(), "id": message.message_id, "aid": aid},
            )

        self._run_transaction("ack", ack)

    def replies(self, correlation_id: uuid.UUID) -> builtins.list[Message]:
        check_correlation_id(correlation_id)
        self._check_open()

        def read(c: Conn) -> builtins.list[Message]:
            rows = c.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM messages.log l {JOINS} "
                "WHERE l.correlation_id = %s AND l.message_type = 'response' ORDER BY l.seq",
                [correlation_id],
            ).fetchall()
            c.rollback()
            return [_message(r) for r in rows]

        result: builtins.list[Message] = self._run("replies", read)
        return result

    def close(self) -> None:
        if self._closed:
            return
        super().close()
        if self._owns_pool:
            self._pool.close()
