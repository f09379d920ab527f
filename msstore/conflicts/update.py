"""``update_with``: read, apply, compare-and-set, and settle conflicts, on any KeyValueStore.

Retries go through tenacity (exponential backoff with jitter, a bounded number of attempts),
which already does what a hand-written loop would, with its edge cases tested.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from msstore.errors import DuplicateKey, InvalidArgument, MsstoreError, VersionConflict
from msstore.protocols import KeyValueStore

if TYPE_CHECKING:
    import tenacity

__all__ = ["Resolver", "RetryPolicy", "Updated", "update_with"]

log = logging.getLogger("msstore.conflicts")


class Resolver(Protocol):
    """What ``update_with`` needs of a resolver (see :mod:`msstore.conflicts.resolvers`)."""

    def apply(self, key: str, current: Any, fn: Callable[[Any], Any]) -> Any:
        """The value to store at ``key``, built by the caller's ``fn`` from ``current`` (what
        is stored now, ``None`` if nothing); the resolver adds what it keeps beside the value
        (a stamp, a clock) or hands ``fn`` its own form of it (a CRDT)."""
        ...

    def resolve(self, key: str, ours: Any, theirs: Any) -> Any:
        """The value to write in place of ``theirs`` (stored by another writer after our read),
        settled against ``ours`` (what :meth:`apply` built)."""
        ...


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InvalidArgument(f"{attribute.name} must be a number >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how patiently to retry a retryable failure.

    The default: 3 attempts, 100 ms doubling up to 5 s,
    plus up to ``jitter`` seconds of random delay so that contending writers spread out. A hot
    key (many writers on one counter) wants more attempts and shorter waits:
    :meth:`hot_key`.
    """

    attempts: int = 3
    base: float = attrs.field(default=0.1, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=_positive)
    cap: float = attrs.field(default=5.0, validator=_positive)
    jitter: float = attrs.field(default=0.1, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if type(self.attempts) is not int or self.attempts < 1:
            raise InvalidArgument(f"attempts must be an int >= 1, got {self.attempts!r}")

    @classmethod
    def hot_key(cls) -> RetryPolicy:
        """Many attempts, millisecond waits: for keys many writers update at once."""
        return cls(attempts=200, base=0.0005, multiplier=1.5, cap=0.02, jitter=0.002)

    def retrying(self) -> tenacity.Retrying:
        """A tenacity ``Retrying`` that waits and gives up as this policy says, retrying only
        retryable msstore errors."""
        import tenacity  # noqa: PLC0415 - loaded on first use, like every optional piece

        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            # base * multiplier**(n-1), capped, plus up to `jitter` at random; spelled with
            # the two long-standing waits so it means the same on every tenacity release.
            wait=tenacity.wait_exponential(
                multiplier=self.base, exp_base=self.multiplier, max=self.cap
            )
            + tenacity.wait_random(0, self.jitter),
            retry=tenacity.retry_if_exception(
                lambda err: isinstance(err, MsstoreError) and err.retryable
            ),
            reraise=True,
        )


@attrs.frozen
class Updated:
    """What ``update_with`` stored: the ``value``, its ``revision``, and how many ``attempts``
    it took. ``written`` is False when the stored value already won (nothing to write)."""

    value: Any
    revision: int
    attempts: int
    written: bool = True


class _Reapply:
    """No resolver: on a conflict, run ``fn`` again on the new value (optimistic locking)."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def apply(self, key: str, current: Any, fn: Callable[[Any], Any]) -> Any:
        return fn(current)

    def resolve(self, key: str, ours: Any, theirs: Any) -> Any:
        return self.fn(theirs)


def update_with(
    kv: KeyValueStore,
    key: str,
    fn: Callable[[Any], Any],
    *,
    resolver: Resolver | None = None,
    policy: RetryPolicy | None = None,
    prepare: Callable[[Any], Any] | None = None,
) -> Updated:
    """Atomically replace ``key``'s value with one derived from it, settling conflicts.

    Reads the key, builds our value (``resolver.apply``; plain ``fn(current)`` without a
    resolver) and writes it with the revision it read (``create`` if the key was absent). When
    another writer got in first (``VersionConflict``), it waits as ``policy`` says
    (``RetryPolicy()`` by default), then reads the key again and settles our value against the
    new one (``resolver.resolve``; without a resolver ``fn`` runs again on it) and writes with
    that fresh revision: reading after the wait, not before it, keeps the revision a retry names
    as young as it can be, so that hot keys do not starve. If the settled value is the one
    already stored, nothing is written. ``prepare`` turns each value about to be written into
    what the KV is handed (the hybrid manager checks and encodes it there, before any write).

    Errors that are not retryable (bad input, ``OutcomeUnknown``, ...) surface at once; after
    the last attempt the last ``VersionConflict`` is raised.
    """
    strategy: Resolver = resolver if resolver is not None else _Reapply(fn)
    policy = policy or RetryPolicy()
    attempts = 0
    ours: Any = None

    def attempt() -> Updated:
        nonlocal attempts, ours
        attempts += 1
        current = kv.get(key)
        if attempts == 1 or current is None or getattr(strategy, "rebase", False):
            # First, deleted meanwhile, or a strategy that applies fn again on the fresh state
            # rather than settling a state built on an older read (see CRDTMerge.rebase).
            ours = strategy.apply(key, None if current is None else current.value, fn)
        else:
            settled = strategy.resolve(key, ours, current.value)
            if settled == current.value:
                return Updated(current.value, current.revision, attempts, written=False)
            ours = settled
        value = ours if prepare is None else prepare(ours)
        try:
            if current is None:
                revision = kv.create(key, value)
            else:
                revision = kv.update(key, value, expected_revision=current.revision)
        except (VersionConflict, DuplicateKey) as err:
            raise VersionConflict(
                f"{key!r} changed while being updated ({attempts} attempts)",
                key=key,
                expected=None if current is None else current.revision,
                current=None,
                hint="raise RetryPolicy.attempts for hot keys",
            ) from err
        return Updated(ours, revision, attempts)

    result: Updated = policy.retrying()(attempt)
    return result
