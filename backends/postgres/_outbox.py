"""``OutboxSource`` on ``messages.outbox`` (migrations 0008, 0014, 0019).

One relay pass is one transaction: the claim (``FOR UPDATE SKIP LOCKED``, in outbox order, each
row flagged when an earlier waiting row of its subject is locked by another relay, so per-subject
order holds across relays), the publish (the relay's call, while the rows stay locked), and the
verdicts: published rows marked (or deleted, ``keep_published=0``), failed rows set aside with
their reason, rows to retry counted. A relay killed before the commit leaves every row waiting.
``NOTIFY msstore_outbox`` (sent by the outbox triggers and by :meth:`PostgresOutbox.add`) wakes a
waiting relay; its poll covers a lost notification.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from psycopg_pool import ConnectionPool

from msstore.codec import Codec
from msstore.coordination import (
    ClaimedRows,
    OutboxEvent,
    OutboxSourceBase,
    OutboxStats,
    Verdicts,
)

from ._base import Conn, PgStore
from ._config import DEFAULT_CONNECT_TIMEOUT
from ._listen import Listener

__all__ = ["CHANNEL", "PostgresOutbox"]

CHANNEL: Final = "msstore_outbox"
WAITING: Final = "published_at IS NULL AND failed_at IS NULL"
PURGE_CHUNK: Final = 10_000

CLAIM: Final = f"""
WITH c AS MATERIALIZED (
  SELECT outbox_id, msg_id, subject, payload, created_at FROM messages.outbox
  WHERE {WAITING} ORDER BY outbox_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
SELECT c.outbox_id, c.msg_id::text, c.subject, c.payload::text,
       extract(epoch FROM c.created_at)::float8,
       EXISTS (SELECT 1 FROM messages.outbox o
               WHERE o.subject = c.subject AND o.outbox_id < c.outbox_id AND o.{WAITING}
                 AND NOT EXISTS (SELECT 1 FROM c c2 WHERE c2.outbox_id = o.outbox_id))
FROM c ORDER BY c.outbox_id
"""
MARK: Final = (
    "UPDATE messages.outbox SET published_at = clock_timestamp() WHERE outbox_id = ANY(%b)"
)
DELETE: Final = "DELETE FROM messages.outbox WHERE outbox_id = ANY(%b)"
FAIL: Final = """
UPDATE messages.outbox o SET failed_at = clock_timestamp(), failure_reason = f.reason
FROM unnest(%b::bigint[], %b::text[]) AS f(outbox_id, reason) WHERE o.outbox_id = f.outbox_id
"""
RETRY: Final = """
UPDATE messages.outbox o SET attempts = o.attempts + 1, last_error = f.reason
FROM unnest(%b::bigint[], %b::text[]) AS f(outbox_id, reason) WHERE o.outbox_id = f.outbox_id
"""
EVENT_COLUMNS: Final = (
    "outbox_id, msg_id::text, subject, payload::text, extract(epoch FROM created_at)::float8"
)
INSERT: Final = f"""
INSERT INTO messages.outbox (subject, payload)
SELECT s, p::jsonb FROM unnest(%b::text[], %b::text[]) AS e(s, p)
RETURNING {EVENT_COLUMNS}
"""


def _event(row: Sequence[Any]) -> OutboxEvent:
    return OutboxEvent(
        outbox_id=row[0], msg_id=row[1], subject=row[2], payload=row[3].encode(), created_at=row[4]
    )


class PostgresOutbox(PgStore, OutboxSourceBase):
    """The transactional outbox on PostgreSQL (see the module docstring). ``pool``: a pool or
    a DSN (a small pool of its own then). ``keep_published``: seconds a published row is kept
    before :meth:`purge_published` deletes it (0: deleted in the pass that published it)."""

    def __init__(
        self,
        pool: ConnectionPool[Any] | str,
        *,
        keep_published: float = 3600.0,
        codec: Codec | None = None,
        deadline: float | None = 60.0,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        OutboxSourceBase.__init__(self, keep_published=keep_published, codec=codec)
        self._adopt(pool, name="msstore-outbox", connect_timeout=connect_timeout, deadline=deadline)
        self._listener: Listener | None = None
        self._listener_lock = threading.Lock()
        self._seen = threading.local()

    # Writing events ---------------------------------------------------------------------------

    def add(self, subject: str, payload: Any, *, conn: Conn | None = None) -> OutboxEvent:
        """Append one event (``payload``: JSON-able); see :meth:`add_many`."""
        return self.add_many([(subject, payload)], conn=conn)[0]

    def add_many(
        self, events: Iterable[tuple[str, Any]], *, conn: Conn | None = None
    ) -> list[OutboxEvent]:
        """Append events (subject, JSON-able payload), in order. ``conn``: write on that
        connection, in its transaction (the events commit, or not, with the caller's change);
        otherwise in a transaction of their own. Subjects and payloads are checked first:
        nothing is written if one is refused."""
        return self._add(events, functools.partial(self._insert, conn=conn))

    def _insert(
        self, subjects: Sequence[str], payloads: Sequence[bytes], *, conn: Conn | None = None
    ) -> list[OutboxEvent]:
        texts = [p.decode() for p in payloads]

        def insert(c: Conn) -> list[OutboxEvent]:
            rows = c.execute(INSERT, [list(subjects), texts]).fetchall()
            c.execute("SELECT pg_notify(%s, 'add')", [CHANNEL])
            return [_event(r) for r in rows]

        if conn is not None:
            return insert(conn)
        result: list[OutboxEvent] = self._run_transaction("add outbox events", insert)
        return result

    # Relaying ---------------------------------------------------------------------------------

    def _relay(self, limit: int, decide: Callable[[ClaimedRows], Verdicts]) -> Verdicts:
        self._seen.generation = self._get_listener().generation

        def relay(c: Conn) -> Verdicts:
            rows = c.execute(CLAIM, {"limit": limit}).fetchall()
            verdicts = decide([(_event(r), bool(r[5])) for r in rows])
            if verdicts.published:
                c.execute(DELETE if verdicts.delete_published else MARK, [list(verdicts.published)])
            if verdicts.failed:
                c.execute(FAIL, [list(column) for column in zip(*verdicts.failed, strict=True)])
            if verdicts.retried:
                c.execute(RETRY, [list(column) for column in zip(*verdicts.retried, strict=True)])
            return verdicts

        result: Verdicts = self._run_transaction("relay outbox events", relay)
        return result

    def _get_listener(self) -> Listener:
        with self._listener_lock:
            if self._listener is None:
                self._listener = Listener(self._pool, CHANNEL, name="msstore-outbox-waker")
            return self._listener

    def _wait(self, timeout: float) -> bool:
        seen = getattr(self._seen, "generation", None)
        listener = self._get_listener()
        return listener.wait(listener.generation if seen is None else seen, timeout)

    # Observing and housekeeping ---------------------------------------------------------------

    def _stats(self) -> OutboxStats:
        def read(c: Conn) -> OutboxStats:
            row = c.execute(
                f"SELECT count(*), extract(epoch FROM min(created_at))::float8 "
                f"FROM messages.outbox WHERE {WAITING}"
            ).fetchone()
            failed = c.execute(
                "SELECT count(*) FROM messages.outbox WHERE failed_at IS NOT NULL"
            ).fetchone()
            assert row is not None and failed is not None
            return OutboxStats(depth=row[0], oldest_created_at=row[1], failed=failed[0])

        result: OutboxStats = self._run_transaction("outbox stats", read, write=False)
        return result

    def _failures(self, limit: int) -> list[tuple[OutboxEvent, str]]:
        def read(c: Conn) -> list[tuple[OutboxEvent, str]]:
            rows = c.execute(
                f"SELECT {EVENT_COLUMNS}, failure_reason FROM messages.outbox "
                "WHERE failed_at IS NOT NULL ORDER BY outbox_id LIMIT %s",
                [limit],
            ).fetchall()
            return [(_event(r), r[5]) for r in rows]

        result: list[tuple[OutboxEvent, str]] = self._run_transaction(
            "read failed outbox events", read, write=False
        )
        return result

    def _requeue(self, outbox_ids: Sequence[int] | None) -> int:
        def requeue(c: Conn) -> int:
            cur = c.execute(
                "UPDATE messages.outbox SET failed_at = NULL, failure_reason = NULL "
                "WHERE failed_at IS NOT NULL AND (%b::bigint[] IS NULL OR outbox_id = ANY(%b))",
                [None if outbox_ids is None else list(outbox_ids)] * 2,
            )
            c.execute("SELECT pg_notify(%s, 'retry')", [CHANNEL])
            return cur.rowcount

        result: int = self._run_transaction("retry failed outbox events", requeue)
        return result

    def _purge(self, older_than: float) -> int:
        def purge(c: Conn) -> int:
            cur = c.execute(
                "DELETE FROM messages.outbox WHERE outbox_id IN (SELECT outbox_id "
                "FROM messages.outbox WHERE published_at < clock_timestamp() - %s * interval "
                "'1 second' LIMIT %s)",
                [older_than, PURGE_CHUNK],
            )
            return cur.rowcount

        total = 0
        while True:
            purged: int = self._run_transaction("purge published outbox events", purge)
            total += purged
            if purged < PURGE_CHUNK:
                return total

    def _release(self) -> None:
        with self._listener_lock:
            if self._listener is not None:
                self._listener.close()
        super()._release()
