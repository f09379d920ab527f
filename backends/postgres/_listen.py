"""``LISTEN`` on one channel, as a generation counter waiters can block on.

Each notification bumps ``generation``; a waiter that saw generation ``g`` before it found
nothing to do returns as soon as the counter moved on, so a notification that arrives between
the look and the wait is not lost. The listening connection is the pool's server (same DSN and
connection settings) but not one of its connections; it reconnects after a pause when the server
goes away, and bumps the counter on every (re)connect, since notifications sent while it was not
listening are gone: waiters look again. A waiter's own timeout (its poll) covers the rest.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

__all__ = ["Listener"]

log = logging.getLogger("msstore.backends.postgres")


class Listener:
    """One ``LISTEN channel`` connection on its own daemon thread (see the module docstring)."""

    def __init__(self, pool: ConnectionPool[Any], channel: str, *, name: str) -> None:
        self._conninfo = str(pool.conninfo)
        kwargs = pool.kwargs
        self._kwargs = dict((kwargs() if callable(kwargs) else kwargs) or {})
        self._kwargs.pop("autocommit", None)
        self.channel = channel
        self._cond = threading.Condition(threading.Lock())
        self.generation = 0
        self.listening = threading.Event()  # set while the LISTEN connection is up
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name=name, daemon=True)
        self._thread.start()

    def _bump(self) -> None:
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, **self._kwargs) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self._bump()  # anything sent while we were not listening: look again
                    self.listening.set()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._bump()
            except Exception as err:  # waiters still poll; reconnect after a pause
                self.listening.clear()
                if self._stop.is_set():
                    return
                log.info("LISTEN %s: %s; reconnecting", self.channel, err)
                self._stop.wait(1.0)

    def wait(self, seen: int, timeout: float) -> bool:
        """Return True once ``generation`` differs from ``seen``, False after ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: self.generation != seen, timeout)

    def close(self) -> None:
        self._stop.set()
        self._bump()
        self._thread.join(5.0)
