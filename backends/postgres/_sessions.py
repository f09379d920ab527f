"""``SessionStore`` on sessions.active (0005, 0018): the token's SHA-256 in ``session_token``,
the sliding TTL in ``ttl_seconds``; a session is live while ``expires_at`` is ahead of the
store's clock (the server's unless one is given)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs
from psycopg_pool import ConnectionPool

from msstore.codec import Codec, default_codec
from msstore.errors import StoreClosed
from msstore.registry import redact_url
from msstore.repositories._sessions import (
    Session,
    SessionType,
    check_open,
    check_token,
    new_token,
    token_hash,
)
from msstore.repositories._tasks import check_seconds

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


def _session(row: Sequence[Any]) -> Session:
    return Session(
        row[0], row[1], row[2], SessionType(row[3]), row[4], row[5], row[6], row[7], row[8], row[9]
    )


class PostgresSessionStore(PgStore):
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
        self._adopt(
            pool, name="msstore-sessions", connect_timeout=connect_timeout, deadline=deadline
        )
        self._clock = clock
        self._codec = codec or default_codec
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresSessionStore({redact_url(self._dsn)})"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(f"{self!r} is shut down", hint="open a new store")

    def _select(self, where: str) -> str:
        return (
            f"SELECT {COLUMNS} FROM sessions.active s "
            f"LEFT JOIN agents.registry r ON r.agent_id = s.agent_id WHERE {where}"
        )

    def open(
        self,
        *,
        agent: str | None = None,
        user: str | None = None,
        ttl: float,
        data: Any = None,
        permissions: Mapping[str, Any] | None = None,
        session_type: SessionType | str = SessionType.INTERACTIVE,
    ) -> Session:
        owner, user, seconds, kind = check_open(
            agent=agent, user=user, ttl=ttl, session_type=session_type, permissions=permissions
        )
        params = {
            "now": self._now(),
            "hash": token_hash(token := new_token()),
            "agent_id": None if owner is None else agent_of_token(owner),
            "user": user,
            "type": kind.value,
            "data": jsonb_text({} if data is None else data, self._codec),
            "permissions": jsonb_text(dict(permissions or {}), self._codec),
            "ttl": seconds,
        }
        self._check_open()

        def insert(c: Conn) -> Session:
            if owner is not None:
                c.execute(ENSURE_AGENTS, ([agent_of_token(owner)], [owner]))
            row = c.execute(
                f"""
                WITH now AS (SELECT {NOW} AS t),
                s AS (
                  INSERT INTO sessions.active (session_token, agent_id, user_id, session_type,
                    session_data, permissions, created_at, last_activity, expires_at,
                    ttl_seconds)
                  SELECT %(hash)s, %(agent_id)s, %(user)s, %(type)s, %(data)s::jsonb,
                    %(permissions)s::jsonb, now.t, now.t,
                    now.t + %(ttl)s * interval '1 second', %(ttl)s
                  FROM now RETURNING *)
                SELECT {COLUMNS} FROM s LEFT JOIN agents.registry r ON r.agent_id = s.agent_id
                """,
                params,
            ).fetchone()
            assert row is not None
            return _session(row)

        session: Session = self._run_transaction("open session", insert)
        return attrs.evolve(session, token=token)

    def get(self, token: str) -> Session | None:
        params = {"now": self._now(), "hash": token_hash(check_token(token))}
        self._check_open()

        def read(c: Conn) -> Session | None:
            row = c.execute(self._select(LIVE), params).fetchone()
            c.rollback()
            return None if row is None else _session(row)

        result: Session | None = self._run("get session", read)
        return result

    def _change(self, token: str, sets: str, extra: dict[str, Any], what: str) -> Session | None:
        params = {"now": self._now(), "hash": token_hash(check_token(token)), **extra}
        self._check_open()

        def change(c: Conn) -> Session | None:
            row = c.execute(
                f"""
                WITH s AS (
                  UPDATE sessions.active s SET {sets} WHERE {LIVE} RETURNING s.*)
                SELECT {COLUMNS} FROM s LEFT JOIN agents.registry r ON r.agent_id = s.agent_id
                """,
                params,
            ).fetchone()
            return None if row is None else _session(row)

        result: Session | None = self._run_statement(what, change)
        return result

    def touch(self, token: str, *, ttl: float | None = None) -> Session | None:
        seconds = None if ttl is None else check_seconds(ttl, field="ttl")
        return self._change(
            token,
            f"last_activity = {NOW}, ttl_seconds = COALESCE(%(ttl)s, s.ttl_seconds), "
            f"expires_at = {NOW} + COALESCE(%(ttl)s, s.ttl_seconds) * interval '1 second'",
            {"ttl": seconds},
            "touch session",
        )

    def update(self, token: str, data: Any) -> Session | None:
        return self._change(
            token,
            f"session_data = %(data)s::jsonb, last_activity = {NOW}, "
            f"expires_at = {NOW} + s.ttl_seconds * interval '1 second'",
            {"data": jsonb_text(data, self._codec)},
            "update session",
        )

    def close(self, token: str) -> bool:
        params = {"now": self._now(), "hash": token_hash(check_token(token))}
        self._check_open()

        def delete(c: Conn) -> bool:
            return c.execute(f"DELETE FROM sessions.active s WHERE {LIVE}", params).rowcount > 0

        result: bool = self._run_statement("close session", delete)
        return result

    def sweep(self) -> int:
        params = {"now": self._now()}
        self._check_open()

        def sweep(c: Conn) -> int:
            return c.execute(
                f"DELETE FROM sessions.active WHERE expires_at <= {NOW}", params
            ).rowcount

        result: int = self._run_statement("sweep sessions", sweep)
        return result

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_pool:
            self._pool.close()
