"""Sessions: an agent's or a user's authenticated context, found by an unguessable token.

``open`` makes a token with :mod:`secrets` (43 URL-safe characters, 256 bits) and stores only
its SHA-256, so a dump of the table leaks no usable token; the plaintext token is returned once,
in the :class:`Session` that ``open`` gives back. A session expires ``ttl`` seconds after its
last ``touch`` (a sliding expiry). An unknown or expired token reads as ``None``, never as an
error; a token that cannot be one (not a str, shorter than :data:`MIN_TOKEN_LENGTH`) is bad input.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from collections.abc import Mapping
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from msstore.errors import InvalidArgument

from ._tasks import check_agent, check_seconds

__all__ = [
    "MIN_TOKEN_LENGTH",
    "Session",
    "SessionStore",
    "SessionType",
    "check_open",
    "check_token",
    "new_token",
    "token_hash",
]

MIN_TOKEN_LENGTH: Final = 32
MAX_USER_LENGTH: Final = 255


class SessionType(enum.StrEnum):
    INTERACTIVE = "interactive"
    API = "api"
    SYSTEM = "system"
    BACKGROUND = "background"


@attrs.frozen
class Session:
    """A session. ``token`` is set only in what ``open`` returns (the store keeps its hash)."""

    session_id: uuid.UUID
    agent: str | None
    user: str | None
    session_type: SessionType
    data: Any
    permissions: Any
    created_at: float
    last_activity: float
    expires_at: float
    ttl: float
    token: str | None = attrs.field(default=None, repr=False)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_token(token: object) -> str:
    if type(token) is not str or len(token) < MIN_TOKEN_LENGTH or len(token) > 512:
        shown = type(token).__name__ if type(token) is not str else f"{len(token)} characters"
        raise InvalidArgument(
            f"token must be a str of {MIN_TOKEN_LENGTH} to 512 characters, got {shown}"
        )
    return token


def check_open(
    *, agent: object, user: object, ttl: object, session_type: object, permissions: object
) -> tuple[str | None, str | None, float, SessionType]:
    """The checked owner, TTL and type of a new session (``InvalidArgument`` naming the field)."""
    if agent is None and user is None:
        raise InvalidArgument("a session needs an agent or a user (agent=, user=)")
    checked_agent = None if agent is None else check_agent(agent, field="agent")
    if user is not None and (type(user) is not str or not 0 < len(user) <= MAX_USER_LENGTH):
        raise InvalidArgument(
            f"user must be a non-empty str of at most {MAX_USER_LENGTH} characters, got {user!r}"
        )
    seconds = check_seconds(ttl, field="ttl")
    try:
        kind = SessionType(session_type)  # type: ignore[arg-type]
    except ValueError:
        raise InvalidArgument(
            f"session_type must be one of {', '.join(t.value for t in SessionType)}, got "
            f"{session_type!r}"
        ) from None
    if permissions is not None and not isinstance(permissions, Mapping):
        raise InvalidArgument(f"permissions must be a mapping or None, got {permissions!r}")
    return checked_agent, user, seconds, kind


@runtime_checkable
class SessionStore(Protocol):
    """Sessions (memory: :class:`~msstore.backends.memory.MemorySessionStore`, PostgreSQL:
    :class:`~msstore.backends.postgres.PostgresSessionStore`)."""

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
        """A new session; its ``token`` is in the result and nowhere else."""
        ...

    def get(self, token: str) -> Session | None:
        """The live session of ``token``, or ``None`` (unknown, expired or closed)."""
        ...

    def touch(self, token: str, *, ttl: float | None = None) -> Session | None:
        """Slide the expiry: ``ttl`` (default: the session's) seconds from now."""
        ...

    def update(self, token: str, data: Any) -> Session | None:
        """Replace the session's data (and touch it)."""
        ...

    def close(self, token: str) -> bool:
        """End the session; ``False`` if there was no live one."""
        ...

    def sweep(self) -> int:
        """Delete expired sessions; return how many."""
        ...

    def shutdown(self) -> None:
        """Release the store's resources."""
        ...
