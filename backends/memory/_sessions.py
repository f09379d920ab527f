"""Sessions in process memory: :class:`~msstore.work.SessionStoreBase`'s primitives, keyed
by token hash."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from msstore.codec import Codec, Encoded
from msstore.work import NewSession, Session, SessionStoreBase, slid

__all__ = ["MemorySessionStore"]


class MemorySessionStore(SessionStoreBase):
    """``SessionStore`` in memory (thread-safe); ``clock``: Unix seconds."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, codec: Codec | None = None
    ) -> None:
        super().__init__(codec=codec)
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def __repr__(self) -> str:
        return f"MemorySessionStore({len(self._sessions)} sessions)"

    def _now(self) -> float:
        return self._clock()

    def _insert(self, new: NewSession, now: float) -> Session:
        session = Session(
            session_id=uuid.uuid4(),
            agent=new.agent,
            user=new.user,
            session_type=new.session_type,
            data=self._codec.decode(new.data.data),
            permissions=self._codec.decode(new.permissions.data),
            created_at=now,
            last_activity=now,
            expires_at=now + new.ttl,
            ttl=new.ttl,
        )
        with self._lock:
            self._sessions[new.token_hash] = session
        return session

    def _live(self, digest: str, now: float) -> Session | None:
        session = self._sessions.get(digest)
        return None if session is None or session.expires_at <= now else session

    def _find(self, digest: str, now: float) -> Session | None:
        with self._lock:
            return self._live(digest, now)

    def _slide(
        self, digest: str, now: float, ttl: float | None, data: Encoded | None
    ) -> Session | None:
        with self._lock:
            session = self._live(digest, now)
            if session is None:
                return None
            if data is None:
                session = slid(session, now, ttl=ttl)
            else:
                session = slid(session, now, ttl=ttl, data=self._codec.decode(data.data))
            self._sessions[digest] = session
            return session

    def _delete(self, digest: str, now: float) -> bool:
        with self._lock:
            if self._live(digest, now) is None:
                return False
            del self._sessions[digest]
            return True

    def _sweep(self, now: float) -> int:
        with self._lock:
            gone = [k for k, s in self._sessions.items() if s.expires_at <= now]
            for key in gone:
                del self._sessions[key]
            return len(gone)
