"""The msstore exception tree.

Every error raised by msstore derives from :class:`MsstoreError`. Driver errors (psycopg, nats-py)
are translated at the backend boundary with ``raise ... from err`` so that callers catch one tree
whatever the backend.

Each class carries a ``retryable`` flag: ``True`` when repeating the same call, unchanged or after
re-reading the current state, can succeed. Errors carry structured fields (``key``, ``hint`` and
class-specific ones) and pickle cleanly, so they can cross process boundaries.
"""

from __future__ import annotations

from typing import Any, ClassVar

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
    """

    retryable: ClassVar[bool] = False

    def __init__(
        self, message: str, *, key: str | None = None, hint: str | None = None, **fields: Any
    ) -> None:
        self.message = message
        self.key = key
        self.hint = hint
        self.fields = fields
        for name, value in fields.items():
            setattr(self, name, value)
        text = message if hint is None else f"{message}; {hint}"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (type(self), self.message, {"key": self.key, "hint": self.hint, **self.fields}),
        )


class NotFound(MsstoreError):
    """A container (bucket, table, schema, index) does not exist.

    Reading a missing *key* is not an error: single-key reads return ``None`` everywhere.
    """


class DuplicateKey(MsstoreError):
    """``create`` (or an INSERT) met a key that already holds a live value."""


class VersionConflict(MsstoreError):
    """A compare-and-set write named a revision that is no longer the key's latest.

    Nothing was written. Re-read the key and retry (``update_with`` does this for you).
    Fields: ``expected`` (the revision the caller named), ``current`` (the latest one, or
    ``None`` when unknown or the key is absent).
    """

    retryable = True


class TTLExpired(MsstoreError):
    """The value existed but its time to live ran out before the operation reached it."""


class ConnectionFailed(MsstoreError):
    """A server could not be reached or the connection broke before the request was sent.

    The operation did not happen; retrying is safe.
    """

    retryable = True


class OutcomeUnknown(MsstoreError):
    """The request was sent but no answer came back in time: it may or may not have happened.

    Re-read the key before writing again; a blind retry of a non-idempotent write can apply twice.
    """


class DeadlineExceeded(MsstoreError):
    """A server did not answer a read within its deadline (field ``limit``, in seconds); the
    connection was dropped. Nothing was changed, so the read can be repeated."""

    retryable = True


class StoreClosed(MsstoreError):
    """The store (or a store the caller depends on) was closed; open a new one."""


class FlushError(MsstoreError):
    """``flush()`` could not store some writes in the SQL tier (field ``failures``: the
    :class:`~msstore.records.FlushFailure` of each). They stay in KV; the rest were stored."""


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


class TransactionConflict(MsstoreError):
    """PostgreSQL aborted a transaction to settle a conflict with another one: a deadlock
    (40P01) or a serialization failure (40001). Field ``sqlstate``. Nothing was committed; the
    whole transaction can run again (``transaction()`` and the flusher do)."""

    retryable = True


class BatchError(MsstoreError):
    """Some keys of a batch failed. Field ``results`` holds, in input order, each key's revision
    or the error it met; the keys that succeeded were written."""


class StaleVectors(MsstoreError):
    """Vectors the caller meant to reuse were deleted meanwhile; field ``hashes`` lists the
    contents that need embedding again."""


class BridgeMisuse(MsstoreError):
    """A blocking msstore call was made where it would deadlock (inside an event loop)."""


class ServerStartError(MsstoreError):
    """An embedded server did not come up; the message holds the end of its log."""


class MigrationError(MsstoreError):
    """The migrations on disk and the history in the database disagree, or a file is bad."""


class StaleClaim(MsstoreError):
    """A worker acted on a task claim that is no longer its own (its lease expired and another
    worker claimed the task, or the task was completed, failed or cancelled meanwhile). Fields
    ``task_id`` and ``attempt`` name the claim; nothing was written."""


class TaskStateError(InvalidArgument):
    """The task is not in a state that allows the operation (pausing a running task, cancelling
    a completed one). Fields ``task_id`` and ``status``; nothing was written."""


class DependencyCycle(InvalidArgument):
    """Task dependencies would form a cycle; field ``cycle`` lists the task ids around it."""
