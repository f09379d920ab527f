"""Sessions: an agent's or a user's authenticated context, found by an unguessable token.

``open`` makes a token with :mod:`secrets` (43 URL-safe characters, 256 bits) and a store keeps
only its SHA-256, so a dump of the table leaks no usable token; the plaintext token is returned
once, in the :class:`Session` that ``open`` gives back. A session expires ``ttl`` seconds after
its last touch (a sliding expiry). An unknown or expired token reads as ``None``, never as an
error; a token that cannot be one (not a str, shorter than :data:`MIN_TOKEN_LENGTH`) is bad
input. ``end(token)`` ends one session; ``close()`` releases the store.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from collections.abc import Mapping
from typing import Any, Final, Protocol, runtime_checkable

import attrs

from msstore.codec import Codec, Encoded, default_codec
from msstore.errors import InvalidArgument
from msstore.protocols import Store
from msstore.spi import StoreBase, check_seconds

from ._checks import check_agent

__all__ = [
    "MIN_TOKEN_LENGTH",
    "NewSession",
    "Session",
    "SessionStore",
    "SessionStoreBase",
    "SessionType",
    "slid",
    "token_hash",
]

MIN_TOKEN_LENGTH: Final = 32
"""A string shorter than this cannot be a session token (bad input, not a miss)."""
MAX_TOKEN_LENGTH: Final = 512
MAX_USER_LENGTH: Final = 255


class SessionType(enum.StrEnum):
    """Who a session serves."""

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


@attrs.frozen(kw_only=True)
class NewSession:
    """A checked session on its way into a store: the token's hash, the JSON encoded once."""

    token_hash: str = attrs.field(repr=False)
    agent: str | None
    user: str | None
    session_type: SessionType
    data: Encoded
    permissions: Encoded
    ttl: float


def token_hash(token: str) -> str:
    """What a store keeps of a token (hex SHA-256)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _hash_of(token: object) -> str:
    if type(token) is not str or not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        shown = type(token).__name__ if type(token) is not str else f"{len(token)} characters"
        raise InvalidArgument(
            f"token must be a str of {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} characters, "
            f"got {shown}"
        )
    return token_hash(token)


def slid(session: Session, now: float, *, ttl: float | None = None, data: Any = ...) -> Session:
    """``session`` touched at ``now``: it expires ``ttl`` (default: its own) seconds later;
    ``data`` replaces its data when given."""
    length = session.ttl if ttl is None else ttl
    changes: dict[str, Any] = {"last_activity": now, "expires_at": now + length, "ttl": length}
    if data is not ...:
        changes["data"] = data
    return attrs.evolve(session, **changes)


@runtime_checkable
class SessionStore(Store, Protocol):
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
        """A new session for ``agent`` and/or ``user``, live for ``ttl`` seconds after its last
        touch; its ``token`` is in the result and nowhere else."""

    def get(self, token: str) -> Session | None:
        """The live session of ``token``, or ``None`` (unknown, expired or ended)."""

    def touch(self, token: str, *, ttl: float | None = None) -> Session | None:
        """Slide the expiry: ``ttl`` (default: the session's) seconds from now."""

    def update(self, token: str, data: Any) -> Session | None:
        """Replace the session's data (and touch it)."""

    def end(self, token: str) -> bool:
        """End the session now; ``False`` if there was no live one."""

    def sweep(self) -> int:
        """Delete expired sessions; return how many."""


class SessionStoreBase(StoreBase, SessionStore):
    """Everything a session store does but storing sessions.

    **Implementing a store.** Subclass this and supply, each atomic: :meth:`_now`,
    :meth:`_insert`, :meth:`_find`, :meth:`_slide`, :meth:`_delete`, :meth:`_sweep`, and
    :meth:`_release` (from :class:`~msstore.spi.StoreBase`). A session is live while its
    ``expires_at`` is after now; only live sessions are found, slid or ended.
    """

    def __init__(self, *, codec: Codec | None = None) -> None:
        self._codec = codec or default_codec

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
        if agent is None and user is None:
            raise InvalidArgument("a session needs an agent or a user (agent=, user=)")
        owner = None if agent is None else check_agent(agent, field="agent")
        if user is not None and (type(user) is not str or not 0 < len(user) <= MAX_USER_LENGTH):
            raise InvalidArgument(
                f"user must be a non-empty str of at most {MAX_USER_LENGTH} characters, "
                f"got {user!r}"
            )
        seconds = check_seconds(ttl, field="ttl")
        try:
            kind = SessionType(session_type)
        except ValueError:
            raise InvalidArgument(
                f"session_type must be one of {', '.join(t.value for t in SessionType)}, got "
                f"{session_type!r}"
            ) from None
        if permissions is not None and not isinstance(permissions, Mapping):
            raise InvalidArgument(f"permissions must be a mapping or None, got {permissions!r}")
        token = secrets.token_urlsafe(32)
        new = NewSession(
            token_hash=token_hash(token),
            agent=owner,
            user=user,
            session_type=kind,
            data=self._codec.encode_canonical({} if data is None else data),
            permissions=self._codec.encode_canonical(dict(permissions or {})),
            ttl=seconds,
        )
        self._check_open()
        return attrs.evolve(self._insert(new, self._now()), token=token)

    def get(self, token: str) -> Session | None:
        digest = _hash_of(token)
        self._check_open()
        return self._find(digest, self._now())

    def touch(self, token: str, *, ttl: float | None = None) -> Session | None:
        digest = _hash_of(token)
        seconds = None if ttl is None else check_seconds(ttl, field="ttl")
        self._check_open()
        return self._slide(digest, self._now(), seconds, None)

    def update(self, token: str, data: Any) -> Session | None:
        digest = _hash_of(token)
        encoded = self._codec.encode_canonical(data)
        self._check_open()
        return self._slide(digest, self._now(), None, encoded)

    def end(self, token: str) -> bool:
        digest = _hash_of(token)
        self._check_open()
        return self._delete(digest, self._now())

    def sweep(self) -> int:
        self._check_open()
        return self._sweep(self._now())

    # The primitives --------------------------------------------------------------------------

    def _now(self) -> float:
        """The store's clock, Unix seconds."""
        raise NotImplementedError

    def _insert(self, new: NewSession, now: float) -> Session:
        """Store a new session created and last active at ``now``, expiring ``new.ttl``
        seconds later, with a new ``session_id``; return it (without a token)."""
        raise NotImplementedError

    def _find(self, digest: str, now: float) -> Session | None:
        """The live session whose token hashes to ``digest``."""
        raise NotImplementedError

    def _slide(
        self, digest: str, now: float, ttl: float | None, data: Encoded | None
    ) -> Session | None:
        """Apply :func:`slid` to the live session (``data`` when given); return it changed."""
        raise NotImplementedError

    def _delete(self, digest: str, now: float) -> bool:
        """Delete the live session; whether there was one."""
        raise NotImplementedError

    def _sweep(self, now: float) -> int:
        """Delete every session that is no longer live; how many."""
        raise NotImplementedError
