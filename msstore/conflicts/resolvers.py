"""Conflict resolvers: strategy objects that settle a compare-and-set conflict.

A resolver is what :func:`~msstore.conflicts.update.update_with` consults when another writer
got in between its read and its write. Each has two parts:

* ``apply(key, current, fn)`` builds the value to store from the stored one and the caller's
  ``fn`` (adding a timestamp, a vector clock, or operating on a CRDT);
* ``resolve(key, ours, theirs)`` combines our proposed value with the one now stored.

Pass one in; each has a sensible default. ``CustomMerge(fn)`` wraps any function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from msstore.conflicts.clocks import HLC, Stamp, VectorClock
from msstore.conflicts.crdt import CRDT, LWWRegister, MVRegister, from_doc
from msstore.conflicts.update import Resolver
from msstore.errors import InvalidArgument

__all__ = ["CRDTMerge", "CustomMerge", "LastWriteWins", "Siblings", "VectorClockResolver"]


C = TypeVar("C", bound=CRDT)


def _load(stored: Any, kind: type[C], resolver: str) -> C:
    """The stored document as a ``kind`` (empty when nothing is stored), or a clear error."""
    if stored is None:
        return kind()
    state = from_doc(stored)
    if not isinstance(state, kind):
        raise InvalidArgument(f"{resolver} expects {kind.TAG} values, got {state.TAG}")
    return state


class Siblings(list[Any]):
    """Concurrent values of one key, handed to ``fn`` when a vector-clocked key has several."""


class LastWriteWins(Resolver):
    """The value with the greatest hybrid-logical-clock stamp wins; ties go to the greater
    writer id. Stored values are :class:`~msstore.conflicts.crdt.LWWRegister` documents.

    ``writer`` names this process or agent; give each concurrent writer its own.
    """

    def __init__(self, writer: str, *, clock: HLC | None = None) -> None:
        self.clock = clock or HLC(writer)

    def _register(self, stored: Any) -> LWWRegister:
        return _load(stored, LWWRegister, "LastWriteWins")

    def unwrap(self, stored: Any) -> Any:
        """The plain value inside a stored register (``None`` for nothing stored)."""
        return self._register(stored).value

    def apply(self, key: str, current: Any, fn: Callable[[Any], Any]) -> Any:
        reg = self._register(current)
        stamp = self.clock.observe(reg.stamp) if reg.stamp is not None else self.clock.now()
        return reg.assign(fn(reg.value), stamp).to_doc()

    def resolve(self, key: str, ours: Any, theirs: Any) -> Any:
        mine, other = self._register(ours), self._register(theirs)
        if other.stamp is not None:
            self.clock.observe(other.stamp)
        return mine.merge(other).to_doc()

    @staticmethod
    def stamp_of(stored: Any) -> Stamp | None:
        """The stamp of a stored register (``None`` for any other document)."""
        reg = from_doc(stored)
        return reg.stamp if isinstance(reg, LWWRegister) else None


class VectorClockResolver(Resolver):
    """Vector clocks decide: a write that has seen the other wins; concurrent writes are kept
    as siblings (stored as an :class:`~msstore.conflicts.crdt.MVRegister`).

    With ``merge`` (a function of the sibling values), siblings are collapsed into one value
    as soon as they appear, under a clock that descends from all of them. Without it they stay
    until a later write, which receives them as :class:`Siblings`, supersedes them.
    ``max_entries`` bounds the clock (see :class:`~msstore.conflicts.clocks.VectorClock` on
    pruning: false conflicts possible, lost writes not).
    """

    def __init__(
        self,
        writer: str,
        *,
        merge: Callable[[Sequence[Any]], Any] | None = None,
        max_entries: int = 64,
    ) -> None:
        if not isinstance(writer, str) or not writer:
            raise InvalidArgument(f"a writer id must be a non-empty str, got {writer!r}")
        self.writer = writer
        self.merge = merge
        self.max_entries = max_entries

    def _register(self, stored: Any) -> MVRegister:
        return _load(stored, MVRegister, "VectorClockResolver")

    @staticmethod
    def siblings_doc(values: Sequence[Any]) -> dict[str, Any]:
        """A stored document holding ``values`` as concurrent siblings (tests, imports)."""
        versions = tuple((v, VectorClock().increment(f"import{i}")) for i, v in enumerate(values))
        return MVRegister(versions).to_doc()

    @staticmethod
    def siblings(stored: Any) -> list[Any]:
        """The values a stored key holds (one unless writes were concurrent)."""
        return [] if stored is None else list(from_doc(stored).value)

    def _collapse(self, reg: MVRegister) -> MVRegister:
        if self.merge is None or len(reg.versions) < 2:
            return reg
        return reg.assign(self.writer, self.merge(reg.value), max_entries=self.max_entries)

    def apply(self, key: str, current: Any, fn: Callable[[Any], Any]) -> Any:
        reg = self._collapse(self._register(current))
        values = reg.value
        seen = values[0] if len(values) == 1 else (Siblings(values) if values else None)
        return reg.assign(self.writer, fn(seen), max_entries=self.max_entries).to_doc()

    def resolve(self, key: str, ours: Any, theirs: Any) -> Any:
        return self._collapse(self._register(ours).merge(self._register(theirs))).to_doc()


class CRDTMerge(Resolver):
    """Values are CRDT documents; conflicts merge (exact for every CRDT type here).

    ``factory`` makes the empty state for a key that does not exist yet (e.g. ``PNCounter``);
    ``fn`` receives the CRDT and returns the next state (``lambda c: c.increment("w1")``).
    """

    #: After a failed compare-and-set, ``update_with`` applies ``fn`` again to the fresh state
    #: instead of merging the state it built on its earlier read. A replicated JetStream bucket
    #: gives no read-after-write (nats-server ADR-53): that read may lack this writer's own last
    #: update, and merging such a state into the fresh one adds nothing, so the increment
    #: would be lost while ``update_with`` reported it stored (seen on an R3 bucket, 2 in 2000).
    rebase = True

    def __init__(self, factory: Callable[[], CRDT]) -> None:
        self.factory = factory

    def _load(self, stored: Any) -> CRDT:
        return self.factory() if stored is None else from_doc(stored)

    def apply(self, key: str, current: Any, fn: Callable[[Any], Any]) -> Any:
        state = fn(self._load(current))
        if not isinstance(state, CRDT):
            raise InvalidArgument(f"fn must return a CRDT state, got {type(state).__name__}")
        return state.to_doc()

    def resolve(self, key: str, ours: Any, theirs: Any) -> Any:
        return self._load(ours).merge(self._load(theirs)).to_doc()


class CustomMerge(Resolver):
    """Any function ``fn(key, ours, theirs) -> value`` as a resolver; ``fn`` applies as is."""

    def __init__(self, fn: Callable[[str, Any, Any], Any]) -> None:
        self.fn = fn

    def apply(self, key: str, current: Any, fn: Callable[[Any], Any]) -> Any:
        return fn(current)

    def resolve(self, key: str, ours: Any, theirs: Any) -> Any:
        return self.fn(key, ours, theirs)
