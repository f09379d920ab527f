"""``SessionStore`` on sessions.active (0005, 0018): :class:`~msstore.work.SessionStoreBase`'s
primitives. The token's SHA-256 is in ``session_token``, the sliding TTL in ``ttl_seconds``; a
session is live while ``expires_at`` is ahead of the store's clock (the server's unless one is
given)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from psycopg_pool import ConnectionPool

from msstore.codec import Codec, Encoded
from msstore.work import NewSession, Session, SessionStoreBase, SessionType

from ._agents import ENSURE_AGENTS, agent_of_token
from ._base import NOW, Conn, PgStore
from ._config import DEFAULT_CONNECT_TIMEOUT
from ._jsonb import jsonb_text

__all__ = ["PostgresSessionStore"]

COLUMNS: Final = """
  s.session_id, r.agent_name, s.user_id, s.session_type, s.session_data, s.permissions,
  extract(epoch FROM s.created_at)::float8, extract(epoch FROM s.last_activity)::float8,
  extract(epoch FROM s.expires_at)::float8, s.ttl_seconds
"""
LIVE: Final = f"s.session_token = %(hash)s AND s.expires_at > {NOW}"
WITH_AGENT: Final = (
    f"SELECT {COLUMNS} FROM s LEFT JOIN agents.registry r ON r.agent_id = s.agent_id"
)
INSERT: Final = f"""
WITH now AS (SELECT {NOW} AS t),
s AS (
  INSERT INTO sessions.active (session_token, agent_id, user_id, session_type, session_data,
    permissions, created_at, last_activity, expires_at, ttl_seconds)
  SELECT %(hash)s, %(agent_id)s, %(user)s, %(type)s, %(data)s::jsonb, %(permissions)s::jsonb,
    now.t, now.t, now.t + %(ttl)s * interval '1 second', %(ttl)s
  FROM now RETURNING *)
{WITH_AGENT}
"""
SLIDE: Final = f"""
WITH s AS (
  UPDATE sessions.active s SET last_activity = {NOW},
    ttl_seconds = COALESCE(%(ttl)s, s.ttl_seconds),
    expires_at = {NOW} + COALESCE(%(ttl)s, s.ttl_seconds) * interval '1 second',
    session_data = COALESCE(%(data)s::jsonb, s.session_data)
  WHERE {LIVE} RETURNING s.*)
{WITH_AGENT}
"""


def _session(row: Sequence[Any]) -> Session:
    return Session(
        row[0], row[1], row[2], SessionType(row[3]), row[4], row[5], row[6], row[7], row[8], row[9]
    )


class PostgresSessionStore(PgStore, SessionStoreBase):
    """``SessionStore`` on PostgreSQL. ``pool``: a pool or a DSN; ``clock``: Unix seconds for
    every time the store compares or records (default: the server's clock)."""

    def __init__(
        self,
        pool: ConnectionPool[Any] | str,
        *,
        clock: Callable[[], float] | None = None,
        codec: Codec | None = None,
        deadline: float | None = 15.0,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        SessionStoreBase.__init__(self, codec=codec)
        self._adopt(
            pool, name="msstore-sessions", connect_timeout=connect_timeout, deadline=deadline
        )
        self._clock = clock

    def _insert(self, new: NewSession, now: float) -> Session:
        params = {
            "now": self._now_param(),
            "hash": new.token_hash,
            "agent_id": None if new.agent is None else agent_of_token(new.agent),
            "user": new.user,
            "type": new.session_type.value,
            "data": jsonb_text(new.data, self._codec),
            "permissions": jsonb_text(new.permissions, self._codec),
            "ttl": new.ttl,
        }

        def insert(c: Conn) -> Session:
            if new.agent is not None:
                c.execute(ENSURE_AGENTS, ([agent_of_token(new.agent)], [new.agent]))
            row = c.execute(INSERT, params).fetchone()
            assert row is not None
            return _session(row)

        result: Session = self._run_transaction("open session", insert)
        return result

    def _find(self, digest: str, now: float) -> Session | None:
        params = {"now": self._now_param(), "hash": digest}

        def read(c: Conn) -> Session | None:
            row = c.execute(
                f"SELECT {COLUMNS} FROM sessions.active s "
                f"LEFT JOIN agents.registry r ON r.agent_id = s.agent_id WHERE {LIVE}",
                params,
            ).fetchone()
            return None if row is None else _session(row)

        result: Session | None = self._run_statement("get session", read, write=False)
        return result

    def _slide(
        self, digest: str, now: float, ttl: float | None, data: Encoded | None
    ) -> Session | None:
        params = {
            "now": self._now_param(),
            "hash": digest,
            "ttl": ttl,
            "data": None if data is None else jsonb_text(data, self._codec),
        }

        def slide(c: Conn) -> Session | None:
            row = c.execute(SLIDE, params).fetchone()
            return None if row is None else _session(row)

        result: Session | None = self._run_statement("touch session", slide)
        return result

    def _delete(self, digest: str, now: float) -> bool:
        params = {"now": self._now_param(), "hash": digest}
        result: bool = self._run_statement(
            "end session",
            lambda c: c.execute(f"DELETE FROM sessions.active s WHERE {LIVE}", params).rowcount > 0,
        )
        return result

    def _sweep(self, now: float) -> int:
        params = {"now": self._now_param()}
        result: int = self._run_statement(
            "sweep sessions",
            lambda c: (
                c.execute(f"DELETE FROM sessions.active WHERE expires_at <= {NOW}", params).rowcount
            ),
        )
        return result
