"""The msstore exception tree.

Every error raised by msstore derives from :class:`MsstoreError`. Driver errors (psycopg, nats-py)
are translated at the backend boundary with ``raise ... from err`` so that callers catch one tree
whatever the backend.

Each class carries a ``retryable`` flag: ``True`` when repeating the same call, unchanged or after
re-reading the current state, can succeed. Errors carry structured fields (``key``, ``hint``,
``sqlstate`` and the typed fields each class declares) and pickle cleanly, so they can cross
process boundaries. One condition is one class, whichever backend raised it.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # (records import the codec, which imports this module)
    from msstore.records import FlushFailure

__all__ = [
    "BatchError",
    "BridgeMisuse",
    "ConnectionFailed",
    "ConsistencyViolation",
    "DeadlineExceeded",
    "DependencyCycle",
    "DuplicateKey",
    "FlushError",
    "InvalidArgument",
    "InvalidKey",
    "MigrationError",
    "MsstoreError",
    "NotFound",
    "OutcomeUnknown",
    "SerializationError",
    "ServerStartError",
    "StaleClaim",
    "StaleVectors",
    "StoreClosed",
    "TTLExpired",
    "TaskStateError",
    "TransactionConflict",
    "Unsupported",
    "VersionConflict",
]


def _rebuild(cls: type[MsstoreError], message: str, fields: dict[str, Any]) -> MsstoreError:
    err = cls.__new__(cls)
    MsstoreError.__init__(err, message, **fields)
    return err


class MsstoreError(Exception):
    """Base of every msstore error.

    ``str(err)`` says what failed and, where there is one, what to do about it (``hint``).
    Every error has ``message``, ``key`` (the key or name it concerns), ``hint`` and ``sqlstate``
    (the SQLSTATE when PostgreSQL raised it); a subclass declares its own fields as typed class
    annotations, which its constructor takes by keyword (an unknown one is a ``TypeError``)
    and which default to ``None``.
    """

    retryable: ClassVar[bool] = False
    _field_names: ClassVar[tuple[str, ...]] = ()

    message: str
    key: str | None
    hint: str | None
    sqlstate: str | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = [
            name
            for name, kind in inspect.get_annotations(cls).items()
            if not str(kind).startswith(("ClassVar", "typing.ClassVar"))
        ]
        cls._field_names = (*cls._field_names, *(n for n in own if n not in cls._field_names))

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        hint: str | None = None,
        sqlstate: str | None = None,
        **fields: Any,
    ) -> None:
        unknown = set(fields) - set(self._field_names)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        self.message = message
        self.key = key
        self.hint = hint
        self.sqlstate = sqlstate
        for name in self._field_names:
            setattr(self, name, fields.get(name))
        super().__init__(message if hint is None else f"{message}; {hint}")

    @property
    def fields(self) -> dict[str, Any]:
        """The fields this class declares, by name (for logs and structured reports)."""
        return {name: getattr(self, name) for name in self._field_names}

    def __reduce__(self) -> tuple[Any, ...]:
        common = {"key": self.key, "hint": self.hint, "sqlstate": self.sqlstate}
        return (_rebuild, (type(self), self.message, {**common, **self.fields}))


class NotFound(MsstoreError):
    """What a call names does not exist: a bucket, table or schema (a store used before its
    migrations ran), a task, a channel, a message, a checkpoint. ``key`` names it.

    Reading a missing *key* is not an error: single-key reads return ``None`` everywhere.
    """


class DuplicateKey(MsstoreError):
    """``create`` met a key that already holds a live value, or a name or id that must be new
    is taken (a channel, a task id); ``key`` names it."""


class VersionConflict(MsstoreError):
    """A compare-and-set write named a revision that is no longer the key's latest.

    Nothing was written. Re-read the key and retry (``update_with`` does this for you).
    Fields: ``expected`` (the revision the caller named), ``current`` (the latest one, or
    ``None`` when unknown or the key is absent).
    """

    retryable = True
    expected: int | None
    current: int | None


class TTLExpired(MsstoreError):
    """The value existed but its time to live ran out before the operation reached it."""


class ConnectionFailed(MsstoreError):
    """A server could not be reached, or the connection broke before the request was sent.

    The operation did not happen; retrying is safe.
    """

    retryable = True


class OutcomeUnknown(MsstoreError):
    """A write was sent but no answer came back in time (field ``limit``, in seconds): it may
    or may not have happened.

    Re-read the key before writing again; a blind retry of a non-idempotent write can apply twice.
    """

    limit: float | None


class DeadlineExceeded(MsstoreError):
    """A server (PostgreSQL or NATS) did not answer a read within its deadline (field
    ``limit``, in seconds). Nothing was changed, so the read can be repeated."""

    retryable = True
    limit: float | None


class StoreClosed(MsstoreError):
    """The store (or a store the caller depends on) was closed; open a new one."""


class FlushError(MsstoreError):
    """``flush()`` could not store some writes in the SQL tier (field ``failures``: the
    :class:`~msstore.records.FlushFailure` of each). They stay in KV; the rest were stored."""

    failures: list[FlushFailure]


class InvalidArgument(MsstoreError, ValueError):
    """An argument or configuration value is out of range or of the wrong kind."""


class InvalidKey(InvalidArgument):
    """A key does not follow the key grammar (see :mod:`msstore.keys`)."""


class SerializationError(InvalidArgument):
    """A value cannot be stored as JSON, or stored bytes cannot be decoded."""


class ConsistencyViolation(MsstoreError):
    """The two tiers disagree beyond what the consistency window allows."""


class Unsupported(MsstoreError, NotImplementedError):
    """The backend (or the server behind it) lacks the capability the call needs.

    Field ``capability`` names it; check ``store.capabilities`` before relying on it.
    """

    capability: str | None


class TransactionConflict(MsstoreError):
    """PostgreSQL aborted a transaction to settle a conflict with another one: a deadlock
    (40P01) or a serialization failure (40001). Field ``sqlstate``. Nothing was committed; the
    whole transaction can run again (``transaction()`` and the flusher do)."""

    retryable = True


class BatchError(MsstoreError):
    """Some keys of a batch failed. Field ``results`` holds, in input order, each key's revision
    or the error it met; ``failed`` the keys that failed. The keys that succeeded were
    written."""

    results: list[int | MsstoreError]
    failed: list[str]


class StaleVectors(MsstoreError):
    """Vectors the caller meant to reuse were deleted meanwhile; field ``hashes`` lists the
    contents that need embedding again."""

    hashes: list[str]


class BridgeMisuse(MsstoreError):
    """A blocking msstore call was made where it would deadlock (inside an event loop)."""


class ServerStartError(MsstoreError):
    """An embedded server did not come up; the message holds the end of its log."""


class MigrationError(MsstoreError):
    """The migrations on disk and the history in the database disagree, or a file is bad."""


class StaleClaim(MsstoreError):
    """A worker acted on a task claim that is no longer its own (its lease ran out, or the task
    was completed, failed or cancelled meanwhile). Fields ``task_id`` and ``attempt`` name the
    claim; nothing was written."""

    task_id: str
    attempt: int


class TaskStateError(InvalidArgument):
    """The task is not in a state that allows the operation (pausing a running task, cancelling
    a completed one). Fields ``task_id`` and ``status``; nothing was written."""

    task_id: str
    status: str


class DependencyCycle(InvalidArgument):
    """Task dependencies would form a cycle; field ``cycle`` lists the task ids around it (the
    first again at the end)."""

    cycle: list[str]
