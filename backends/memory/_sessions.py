"""Sessions in process memory (the rules of :mod:`msstore.repositories._sessions`)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from msstore.codec import Codec, default_codec
from msstore.errors import StoreClosed
from msstore.repositories._sessions import (
    Session,
    SessionType,
    check_open,
    check_token,
    new_token,
    token_hash,
)
from msstore.repositories._tasks import check_seconds

__all__ = ["MemorySessionStore"]


class MemorySessionStore:
    """``SessionStore`` in memory (thread-safe), keyed by token hash; ``clock``: Unix seconds."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, codec: Codec | None = None
    ) -> None:
        self._clock = clock
        self._codec = codec or default_codec
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("this session store is shut down", hint="open a new one")

    def _copy(self, value: Any) -> Any:
        return self._codec.decode(self._codec.encode(value))

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
        stored_data = self._copy({} if data is None else data)
        stored_permissions = self._copy(dict(permissions or {}))
        token = new_token()
        with self._lock:
            self._check_open()
            now = self._clock()
            session = Session(
                uuid.uuid4(),
                owner,
                user,
                kind,
                stored_data,
                stored_permissions,
                now,
                now,
                now + seconds,
                seconds,
            )
            self._sessions[token_hash(token)] = session
            return attrs.evolve(session, token=token)

    def _live(self, token: str) -> tuple[str, Session] | None:
        key = token_hash(check_token(token))
        session = self._sessions.get(key)
        if session is None or session.expires_at <= self._clock():
            return None
        return key, session

    def get(self, token: str) -> Session | None:
        with self._lock:
            found = self._live(token)
            return None if found is None else found[1]

    def _change(self, token: str, change: Callable[[Session, float], Session]) -> Session | None:
        with self._lock:
            self._check_open()
            found = self._live(token)
            if found is None:
                return None
            key, session = found
            session = change(session, self._clock())
            self._sessions[key] = session
            return session

    def touch(self, token: str, *, ttl: float | None = None) -> Session | None:
        seconds = None if ttl is None else check_seconds(ttl, field="ttl")

        def touch(session: Session, now: float) -> Session:
            length = session.ttl if seconds is None else seconds
            return attrs.evolve(session, last_activity=now, expires_at=now + length, ttl=length)

        return self._change(token, touch)

    def update(self, token: str, data: Any) -> Session | None:
        stored = self._copy(data)

        def update(session: Session, now: float) -> Session:
            return attrs.evolve(
                session, data=stored, last_activity=now, expires_at=now + session.ttl
            )

        return self._change(token, update)

    def close(self, token: str) -> bool:
        with self._lock:
            self._check_open()
            found = self._live(token)
            if found is None:
                return False
            del self._sessions[found[0]]
            return True

    def sweep(self) -> int:
        with self._lock:
            now = self._clock()
            gone = [k for k, s in self._sessions.items() if s.expires_at <= now]
            for key in gone:
                del self._sessions[key]
            return len(gone)

    def shutdown(self) -> None:
        self._closed = True
