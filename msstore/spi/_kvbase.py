"""What every KeyValueStore implementation checks before it does any I/O.

A backend subclasses :class:`KVBase` for its argument checks (keys, TTLs, revisions, batches),
its name and capabilities, and the closed state; it adds only the moving of bytes. Every check
here runs before anything is written, which is how "bad input, nothing half-written" holds in
every backend alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from msstore import keys as keygrammar
from msstore._internal.ttl import check_ttl
from msstore.buckets import BucketConfig
from msstore.capabilities import Capability, require
from msstore.codec import Codec
from msstore.errors import InvalidArgument, VersionConflict
from msstore.protocols import KeyValueStore

if TYPE_CHECKING:  # (conflicts builds on the KV protocols: imported when called)
    from msstore.conflicts.update import Resolver, RetryPolicy, Updated

from ._checks import check_many, check_pairs
from ._store import StoreBase

__all__ = ["KV_CAPABILITIES", "KVBase", "check_revision", "stale_revision"]

# What a JetStream-like KV bucket does; per-key TTLs come on top where the store honours them.
KV_CAPABILITIES: Final = frozenset(
    {
        Capability.TTL,
        Capability.HISTORY,
        Capability.WATCH,
        Capability.CAS,
        Capability.PURGE,
        Capability.BATCH,
        Capability.ENCODED_VALUES,
    }
)
"""What a JetStream-like KV bucket does; per-key TTLs come on top where the store honours them."""

_UNCONDITIONAL: Any = object()  # no expected revision was named (None is a bad one)


def stale_revision(key: str, expected: int, current: int | None) -> VersionConflict:
    """The error a compare-and-set write raises when ``key`` is no longer at ``expected``."""
    return VersionConflict(
        f"{key!r} is at revision {current}, not {expected}",
        key=key,
        expected=expected,
        current=current,
        hint="re-read the key and retry",
    )


def check_revision(revision: object, name: str = "expected_revision", *, minimum: int = 1) -> int:
    """A revision argument: an ``int`` of at least ``minimum`` (bools and floats refused)."""
    if type(revision) is not int or revision < minimum:
        raise InvalidArgument(f"{name} must be an int >= {minimum}, got {revision!r}")
    return revision


class KVBase(StoreBase, KeyValueStore):
    """Shared validation and bookkeeping for :class:`~msstore.protocols.KeyValueStore`s."""

    config: BucketConfig
    _caps: frozenset[Capability]
    _codec: Codec

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self._caps

    def _require(self, capability: Capability) -> None:
        require(self._caps, capability, backend=repr(self))

    def _check_listing(self, pattern: str | None, prefix: str | None) -> None:
        """The arguments of ``keys()``: a wildcard pattern and/or a key prefix."""
        if pattern is not None:
            keygrammar.check_pattern(pattern)
        if prefix is not None:
            keygrammar.check_prefix(prefix)
        self._check_open()

    def _ttl(self, ttl: object) -> int | None:
        """A per-key TTL in whole seconds, refused where the store cannot honour it."""
        seconds = check_ttl(ttl)
        if seconds is not None:
            self._require(Capability.PER_KEY_TTL)
        return seconds

    def _prepare(
        self,
        key: str,
        value: Any,
        ttl: object,
        *,
        cas: bool = False,
        expected_revision: object = _UNCONDITIONAL,
    ) -> tuple[bytes, int | None]:
        """A single write's checks, in order; returns the encoded value and TTL seconds."""
        if cas:
            self._require(Capability.CAS)
        keygrammar.check_key(key)
        if expected_revision is not _UNCONDITIONAL:
            # 0: the key has no retained entry at all, not even a delete marker.
            check_revision(expected_revision, minimum=0)
        raw = self._codec.encode(value)
        seconds = self._ttl(ttl)
        self._check_open()
        return raw, seconds

    def _check_keys(self, keys: Iterable[str]) -> list[str]:
        """A batch read's checks: a list of keys (one key alone is refused), each checked, the
        store open."""
        wanted = [keygrammar.check_key(k) for k in check_many(keys, field="keys", of="keys")]
        self._check_open()
        return wanted

    def _prepare_batch(
        self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], ttl: object
    ) -> tuple[list[tuple[str, bytes]], int | None]:
        """A batch write's checks: every key checked and every value encoded, the TTL, the
        store open; nothing is written before all pass."""
        pairs = check_pairs(items, field="items")
        encoded = [(keygrammar.check_key(k), self._codec.encode(v)) for k, v in pairs]
        seconds = self._ttl(ttl)
        self._check_open()
        return encoded, seconds

    def update_with(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        resolver: Resolver | None = None,
        policy: RetryPolicy | None = None,
    ) -> Updated:
        """Read, apply ``fn``, compare-and-set, settle conflicts: see
        :func:`msstore.conflicts.update_with`."""
        from msstore.conflicts.update import update_with  # noqa: PLC0415

        return update_with(self, key, fn, resolver=resolver, policy=policy)
