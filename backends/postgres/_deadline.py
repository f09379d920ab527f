"""Client-side deadlines for SQL calls: a server that never answers cannot hold a caller.

``statement_timeout`` is enforced by the server, which does nothing for a query it never
received (a partitioned network, a hung host), and TCP keepalives are answered by whatever
still holds the other end. So every call the state store makes runs under a deadline kept
here, on the client: one watchdog thread per process sleeps until the earliest deadline; when
one passes, it shuts the connection's socket down (both directions, on a duplicate of its file
descriptor, so psycopg still owns and closes the original). The call blocked in psycopg then
fails at once with a broken connection, which the pool discards; the caller turns that into a
typed error naming the limit.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from typing import Any

__all__ = ["Deadline", "guard"]

log = logging.getLogger("msstore.backends.postgres")


class Deadline:
    """One guarded call; ``fired`` is set when the watchdog cut its connection."""

    __slots__ = ("at", "conn", "fired", "seconds")

    def __init__(self, conn: Any, seconds: float) -> None:
        self.conn = conn
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.fired = False


class _Watchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Deadline]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def forked(self) -> None:
        """In a child after fork(): the parent's thread and calls are not this process's."""
        self._cond = threading.Condition(threading.Lock())
        self._heap, self._live, self._thread = [], set(), None

    def add(self, deadline: Deadline) -> int:
        with self._cond:
            if self._thread is None:  # first use (in this process)
                self._thread = threading.Thread(
                    target=self._run, name="msstore-sql-deadlines", daemon=True
                )
                self._thread.start()
            token = next(self._ids)
            self._live.add(token)
            earliest = not self._heap or deadline.at < self._heap[0][0]
            heapq.heappush(self._heap, (deadline.at, token, deadline))
            if earliest:
                self._cond.notify()
            return token

    def remove(self, token: int) -> None:
        with self._cond:
            self._live.discard(token)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # finished in time
                if not self._heap:
                    self._cond.wait()
                    continue
                at, token, deadline = self._heap[0]
                now = time.monotonic()
                if at > now:
                    self._cond.wait(at - now)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(token)
                deadline.fired = True
                # Under the lock: a call that finishes now waits in remove() and then sees
                # ``fired``, so a cut connection is never handed back to the pool as good.
                _cut(deadline.conn)


def _cut(conn: Any) -> None:
    """Shut the connection's socket down so that the call blocked on it fails now."""
    try:
        fd = conn.pgconn.socket
        dup = os.dup(fd)
    except Exception:  # already closed: nothing is blocked on it
        return
    try:
        with socket.socket(fileno=dup) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError as err:
        log.debug("cutting a connection past its deadline: %s", err)


_watchdog = _Watchdog()
os.register_at_fork(after_in_child=_watchdog.forked)


class guard:
    """Run the block with ``conn`` cut off ``seconds`` from now if it is still inside (a class,
    not a generator: it wraps every SQL call)."""

    __slots__ = ("_conn", "_deadline", "_token")

    def __init__(self, conn: Any, seconds: float | None) -> None:
        self._conn = conn
        self._deadline = None if seconds is None else Deadline(conn, seconds)
        self._token = 0

    def __enter__(self) -> Deadline | None:
        if self._deadline is not None:
            self._token = _watchdog.add(self._deadline)
        return self._deadline

    def __exit__(self, *exc: object) -> None:
        deadline = self._deadline
        if deadline is None:
            return
        _watchdog.remove(self._token)
        if deadline.fired:
            with contextlib.suppress(Exception):
                self._conn.close()  # the pool drops a closed connection instead of reusing it
