"""Clocks that order concurrent writes: hybrid logical clocks and vector clocks.

Both are plain values (attrs, immutable) that serialise to JSON documents through
:meth:`to_doc` / :meth:`from_doc`, so they travel inside stored values in any backend.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

from msstore.errors import InvalidArgument, SerializationError

__all__ = ["HLC", "Stamp", "VectorClock"]


@attrs.frozen(order=True)
class Stamp:
    """A hybrid-logical-clock timestamp: wall milliseconds, a logical counter, the writer id.

    Stamps compare by ``(wall_ms, logical, node)``: causally later stamps are greater, and ties
    between writers break deterministically by writer id.
    """

    wall_ms: int
    logical: int
    node: str

    def to_doc(self) -> list[Any]:
        """The stamp as JSON: ``[wall_ms, logical, node]``."""
        return [self.wall_ms, self.logical, self.node]

    @classmethod
    def from_doc(cls, doc: Any) -> Stamp:
        """Read back :meth:`to_doc`'s form; ``SerializationError`` for anything else."""
        try:
            wall, logical, node = doc
            if type(wall) is not int or type(logical) is not int or type(node) is not str:
                raise TypeError
        except (TypeError, ValueError):
            raise SerializationError(f"not an HLC stamp: {doc!r}") from None
        return cls(wall, logical, node)


class HLC:
    """A hybrid logical clock for one writer (Kulkarni et al., 2014). Thread-safe.

    :meth:`now` stamps a local event; :meth:`observe` folds in a stamp read from elsewhere, so a
    write that follows a read is stamped after it even when the reader's wall clock is behind.
    Wall-clock skew therefore cannot reorder causally related writes; between unrelated writers
    it orders by wall time, then by writer id.
    """

    def __init__(self, node: str, *, wall_ms: Callable[[], int] | None = None) -> None:
        if not isinstance(node, str) or not node:
            raise InvalidArgument(f"an HLC needs a non-empty writer id, got {node!r}")
        self.node = node
        self._wall = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._last = Stamp(0, 0, node)

    def now(self) -> Stamp:
        """A stamp for a local event, after every stamp this clock gave or observed."""
        with self._lock:
            wall = self._wall()
            last = self._last
            if wall > last.wall_ms:
                stamp = Stamp(wall, 0, self.node)
            else:
                stamp = Stamp(last.wall_ms, last.logical + 1, self.node)
            self._last = stamp
            return stamp

    def observe(self, remote: Stamp) -> Stamp:
        """Fold in a stamp seen elsewhere; return this clock's next stamp (after both)."""
        with self._lock:
            wall = self._wall()
            last = self._last
            top = max(wall, last.wall_ms, remote.wall_ms)
            if top == last.wall_ms == remote.wall_ms:
                logical = max(last.logical, remote.logical) + 1
            elif top == last.wall_ms:
                logical = last.logical + 1
            elif top == remote.wall_ms:
                logical = remote.logical + 1
            else:
                logical = 0
            self._last = Stamp(top, logical, self.node)
            return self._last


@attrs.frozen
class VectorClock:
    """Per-writer event counters, with when each entry last moved (for pruning).

    ``a.dominates(b)``: ``a`` has seen everything ``b`` has, and more. Neither dominating the
    other (and not equal) means the two are concurrent.

    **Pruning**: a clock keeps at most ``max_entries`` writers; past that the entries updated
    longest ago are dropped. A pruned clock may look concurrent with a clock it actually
    descends from, so pruning can create *false conflicts* (kept as siblings), never lost writes.
    """

    counters: dict[str, int] = attrs.field(factory=dict)
    touched: dict[str, int] = attrs.field(factory=dict, eq=False)

    def increment(
        self, node: str, *, max_entries: int = 64, now_ms: int | None = None
    ) -> VectorClock:
        """This clock with writer ``node``'s counter one higher (the oldest entries pruned past
        ``max_entries``, see the class docstring; ``now_ms``: when, for pruning)."""
        counters = dict(self.counters)
        touched = dict(self.touched)
        counters[node] = counters.get(node, 0) + 1
        touched[node] = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        if len(counters) > max_entries:
            for old in sorted(counters, key=lambda n: (touched.get(n, 0), n))[
                : len(counters) - max_entries
            ]:
                if old != node:
                    counters.pop(old)
                    touched.pop(old, None)
        return VectorClock(counters, touched)

    def merge(self, other: VectorClock) -> VectorClock:
        """The clock that has seen everything this one and ``other`` have (the greater counter per
        writer)."""
        counters = dict(self.counters)
        touched = dict(self.touched)
        for node, count in other.counters.items():
            if count > counters.get(node, 0):
                counters[node] = count
            touched[node] = max(touched.get(node, 0), other.touched.get(node, 0))
        return VectorClock(counters, touched)

    def dominates(self, other: VectorClock) -> bool:
        """True if this clock has seen all of ``other`` and something more."""
        mine = self.counters
        if not all(mine.get(n, 0) >= c for n, c in other.counters.items()):
            return False
        return any(c > other.counters.get(n, 0) for n, c in mine.items())

    def descends(self, other: VectorClock) -> bool:
        """True if this clock has seen all of ``other`` (equal clocks descend each other)."""
        return all(self.counters.get(n, 0) >= c for n, c in other.counters.items())

    def concurrent(self, other: VectorClock) -> bool:
        """True if neither clock has seen all of the other: the two writes were concurrent."""
        return not self.descends(other) and not other.descends(self)

    def to_doc(self) -> dict[str, Any]:
        """The clock as JSON: ``{writer: [counter, last moved ms]}``."""
        return {n: [c, self.touched.get(n, 0)] for n, c in sorted(self.counters.items())}

    @classmethod
    def from_doc(cls, doc: Any) -> VectorClock:
        """Read back :meth:`to_doc`'s form; ``SerializationError`` for anything else."""
        if not isinstance(doc, dict):
            raise SerializationError(f"not a vector clock: {doc!r}")
        try:
            counters = {str(n): int(v[0]) for n, v in doc.items()}
            touched = {str(n): int(v[1]) for n, v in doc.items()}
        except (TypeError, ValueError, IndexError):
            raise SerializationError(f"not a vector clock: {doc!r}") from None
        return cls(counters, touched)
