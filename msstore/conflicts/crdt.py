"""State-based CRDTs: replicas that merge to the same value whatever order states arrive in.

Every type is an immutable value: operations return a new state, :meth:`merge` is commutative,
associative and idempotent, and :meth:`to_doc` gives a JSON document tagged ``"$crdt"`` that any
backend stores as an ordinary value (:func:`from_doc` reads any of them back).

* :class:`GCounter` - grow-only counter (per-writer maxima).
* :class:`PNCounter` - counter that also decrements (two G-Counters).
* :class:`LWWRegister` - one value; the greatest HLC stamp wins, ties by writer id.
* :class:`MVRegister` - multi-value register: concurrent assignments are all kept (siblings).
* :class:`ORSet` - observed-remove set of ``str``/``int`` elements, **add wins**: a remove
  deletes only the adds it has seen, so an add concurrent with a remove survives.
  Tombstone-free (dots + causal context).
* :class:`LWWMap` - a JSON object whose keys are LWW registers. A **remove** is a timestamped
  tombstone, so a concurrent remove and update are settled by HLC stamp: the later one wins
  (ties by writer id). Chosen over an OR-Map because values are whole JSON documents, not
  nested CRDTs: last-writer-wins per key is what a document update means.

Writer ids (``node``) must be unique per concurrent writer: two writers sharing an id can
overwrite each other's counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Self

import attrs

from msstore.conflicts.clocks import Stamp, VectorClock
from msstore.errors import InvalidArgument, SerializationError

__all__ = [
    "CRDT",
    "GCounter",
    "LWWMap",
    "LWWRegister",
    "MVRegister",
    "ORSet",
    "PNCounter",
    "from_doc",
]


class CRDT:
    """Base of the CRDT types: a tag, merge, value and the document form."""

    TAG: ClassVar[str]
    _types: ClassVar[dict[str, type[CRDT]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        CRDT._types[cls.TAG] = cls

    def merge(self, other: Self) -> Self:
        """The state that has seen both this one's updates and ``other``'s (commutative,
        associative, idempotent); ``InvalidArgument`` for another CRDT type."""
        raise NotImplementedError

    @property
    def value(self) -> Any:
        """The plain value this state stands for (a number, a set, a dict, ...)."""
        raise NotImplementedError

    def to_doc(self) -> dict[str, Any]:
        """The tagged JSON document (``{"$crdt": TAG, ...}``) that stores this state in any backend;
        :meth:`from_doc` reads it back."""
        return {"$crdt": self.TAG, **self._body()}

    @classmethod
    def from_doc(cls, doc: Any) -> Self:
        """Read back a document :meth:`to_doc` made, of this type
        (``PNCounter.from_doc(kv.get("visits").value).value``); ``SerializationError`` for
        anything else, another CRDT type's document included."""
        found = from_doc(doc)
        if not isinstance(found, cls):
            raise SerializationError(f"not a {cls.__name__} document: a {type(found).__name__}")
        return found

    def _body(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_body(cls, doc: Mapping[str, Any]) -> Self:
        raise NotImplementedError

    def _check_same(self, other: object) -> None:
        if type(other) is not type(self):
            raise InvalidArgument(
                f"cannot merge a {type(self).__name__} with a {type(other).__name__}"
            )


def from_doc(doc: Any) -> CRDT:
    """Read back any CRDT's document form; raise ``SerializationError`` on anything else."""
    if not isinstance(doc, dict) or doc.get("$crdt") not in CRDT._types:
        raise SerializationError(f"not a CRDT document: {str(doc)[:80]}")
    try:
        return CRDT._types[doc["$crdt"]]._from_body(doc)
    except (KeyError, TypeError, ValueError) as err:
        raise SerializationError(f"malformed {doc['$crdt']} document: {err}") from None


def _node(node: object) -> str:
    if not isinstance(node, str) or not node:
        raise InvalidArgument(f"a writer id must be a non-empty str, got {node!r}")
    return node


def _amount(n: object) -> int:
    if type(n) is not int or n < 0:
        raise InvalidArgument(f"an amount must be an int >= 0, got {n!r}")
    return n


@attrs.frozen
class GCounter(CRDT):
    """A grow-only counter: each writer counts its own increments; the value is their sum."""

    TAG: ClassVar[str] = "gcounter"
    counts: dict[str, int] = attrs.field(factory=dict)

    def increment(self, node: str, n: int = 1) -> GCounter:
        """This counter with ``n`` (>= 0) more counted for writer ``node``."""
        if _amount(n) == 0:  # a zero entry would make equal states compare unequal
            _node(node)
            return self
        counts = dict(self.counts)
        counts[_node(node)] = counts.get(node, 0) + n
        return GCounter(counts)

    def merge(self, other: GCounter) -> GCounter:
        self._check_same(other)
        counts = dict(self.counts)
        for node, count in other.counts.items():
            if count > counts.get(node, 0):
                counts[node] = count
        return GCounter(counts)

    @property
    def value(self) -> int:
        return sum(self.counts.values())

    def _body(self) -> dict[str, Any]:
        return {"counts": dict(sorted(self.counts.items()))}

    @classmethod
    def _from_body(cls, doc: Mapping[str, Any]) -> GCounter:
        return cls({str(k): int(v) for k, v in doc["counts"].items() if int(v) > 0})


@attrs.frozen
class PNCounter(CRDT):
    """A counter that goes both ways: a grow-only counter of increments and one of decrements; the
    value is their difference."""

    TAG: ClassVar[str] = "pncounter"
    p: GCounter = attrs.field(factory=GCounter)
    n: GCounter = attrs.field(factory=GCounter)

    def increment(self, node: str, n: int = 1) -> PNCounter:
        """This counter with ``n`` (>= 0) added by writer ``node``."""
        return PNCounter(self.p.increment(node, n), self.n)

    def decrement(self, node: str, n: int = 1) -> PNCounter:
        """This counter with ``n`` (>= 0) taken away by writer ``node``."""
        return PNCounter(self.p, self.n.increment(node, n))

    def merge(self, other: PNCounter) -> PNCounter:
        self._check_same(other)
        return PNCounter(self.p.merge(other.p), self.n.merge(other.n))

    @property
    def value(self) -> int:
        return self.p.value - self.n.value

    def _body(self) -> dict[str, Any]:
        return {"p": self.p._body()["counts"], "n": self.n._body()["counts"]}

    @classmethod
    def _from_body(cls, doc: Mapping[str, Any]) -> PNCounter:
        return cls(
            GCounter._from_body({"counts": doc["p"]}), GCounter._from_body({"counts": doc["n"]})
        )


@attrs.frozen
class LWWRegister(CRDT):
    """A last-writer-wins register: the value with the greatest :class:`Stamp` wins."""

    TAG: ClassVar[str] = "lww"
    val: Any = None
    stamp: Stamp | None = None

    def assign(self, value: Any, stamp: Stamp) -> LWWRegister:
        """Set ``value`` at ``stamp``; an older stamp than the current one changes nothing."""
        if self.stamp is not None and not _wins((stamp, value), (self.stamp, self.val)):
            return self
        return LWWRegister(value, stamp)

    def merge(self, other: LWWRegister) -> LWWRegister:
        self._check_same(other)
        if other.stamp is None:
            return self
        if self.stamp is None or _wins((other.stamp, other.val), (self.stamp, self.val)):
            return other
        return self

    @property
    def value(self) -> Any:
        return self.val

    def _body(self) -> dict[str, Any]:
        return {"value": self.val, "stamp": None if self.stamp is None else self.stamp.to_doc()}

    @classmethod
    def _from_body(cls, doc: Mapping[str, Any]) -> LWWRegister:
        stamp = doc["stamp"]
        return cls(doc["value"], None if stamp is None else Stamp.from_doc(stamp))


@attrs.frozen
class MVRegister(CRDT):
    """Concurrent assignments are all kept; ``value`` lists them (siblings), oldest writer
    first. An assignment supersedes every sibling it has seen."""

    TAG: ClassVar[str] = "mvreg"
    versions: tuple[tuple[Any, VectorClock], ...] = ()

    def assign(self, node: str, value: Any, *, max_entries: int = 64) -> MVRegister:
        """This register holding only ``value``, written by ``node`` after every sibling it holds
        (its clock keeps at most ``max_entries`` writers)."""
        clock = VectorClock()
        for _, seen in self.versions:
            clock = clock.merge(seen)
        return MVRegister(((value, clock.increment(_node(node), max_entries=max_entries)),))

    def merge(self, other: MVRegister) -> MVRegister:
        self._check_same(other)
        pool: list[tuple[Any, VectorClock]] = []
        for value, clock in (*self.versions, *other.versions):
            if any(c == clock for _, c in pool):
                continue  # the same write, seen twice
            pool.append((value, clock))
        kept = [(v, c) for v, c in pool if not any(o.dominates(c) for _, o in pool)]
        kept.sort(key=lambda vc: sorted(vc[1].counters.items()))
        return MVRegister(tuple(kept))

    @property
    def value(self) -> list[Any]:
        return [v for v, _ in self.versions]

    @property
    def clock(self) -> VectorClock:
        """Everything this register has seen."""
        clock = VectorClock()
        for _, seen in self.versions:
            clock = clock.merge(seen)
        return clock

    def _body(self) -> dict[str, Any]:
        return {"versions": [[v, c.to_doc()] for v, c in self.versions]}

    @classmethod
    def _from_body(cls, doc: Mapping[str, Any]) -> MVRegister:
        return cls(tuple((v, VectorClock.from_doc(c)) for v, c in doc["versions"]))


def _wins(a: tuple[Stamp, Any], b: tuple[Stamp, Any]) -> bool:
    """True if write ``a`` beats write ``b``: the later stamp, and on a stamp tie (which only
    a misbehaving clock produces) the greater canonical JSON, so merging stays commutative."""
    if a[0] != b[0]:
        return a[0] > b[0]
    return json.dumps(a[1], sort_keys=True) > json.dumps(b[1], sort_keys=True)


def _element(elem: object) -> Any:
    # str and int only: Python hashes True like 1 and 1.0 like 1, which would merge elements
    # JSON keeps apart.
    if type(elem) is not str and type(elem) is not int:
        raise InvalidArgument(f"OR-Set elements are str or int, got {elem!r}")
    return elem


@attrs.frozen
class ORSet(CRDT):
    """Add-wins observed-remove set of ``str`` and ``int`` elements.

    Each add is tagged with a *dot* (writer, counter); ``context`` records every dot a replica
    has seen. Merging keeps a dot present on both sides, or on one side when the other has not
    seen it; a dot seen by the other side but absent there was removed.
    """

    TAG: ClassVar[str] = "orset"
    dots: dict[Any, frozenset[tuple[str, int]]] = attrs.field(factory=dict)
    context: dict[str, int] = attrs.field(factory=dict)

    def add(self, node: str, elem: Any) -> ORSet:
        """This set with ``elem`` (a ``str`` or ``int``) added by writer ``node``."""
        node = _node(node)
        counter = self.context.get(node, 0) + 1
        dots = dict(self.dots)
        dots[_element(elem)] = frozenset({(node, counter)})  # supersedes the dots it has seen
        context = dict(self.context)
        context[node] = counter
        return ORSet(dots, context)

    def add_all(self, node: str, elems: Iterable[Any]) -> ORSet:
        """This set with every element of ``elems`` added by writer ``node``."""
        node = _node(node)
        counter = self.context.get(node, 0)
        dots = dict(self.dots)
        for elem in elems:
            counter += 1
            dots[_element(elem)] = frozenset({(node, counter)})
        context = dict(self.context)
        context[node] = counter
        return ORSet(dots, context)

    def remove(self, elem: Any) -> ORSet:
        """This set without ``elem`` (an add it has not seen survives the merge: add wins)."""
        if elem not in self.dots:
            return self
        dots = dict(self.dots)
        del dots[elem]
        return ORSet(dots, self.context)

    def merge(self, other: ORSet) -> ORSet:
        self._check_same(other)
        mine, theirs = self.dots, other.dots
        my_ctx, their_ctx = self.context, other.context
        dots: dict[Any, frozenset[tuple[str, int]]] = {}
        for elem in mine.keys() | theirs.keys():
            a = mine.get(elem, frozenset())
            b = theirs.get(elem, frozenset())
            if a == b:
                kept = a
            else:
                kept = (
                    (a & b)
                    | frozenset(d for d in a - b if their_ctx.get(d[0], 0) < d[1])
                    | frozenset(d for d in b - a if my_ctx.get(d[0], 0) < d[1])
                )
            if kept:
                dots[elem] = kept
        context = dict(my_ctx)
        for node, counter in their_ctx.items():
            if counter > context.get(node, 0):
                context[node] = counter
        return ORSet(dots, context)

    @property
    def value(self) -> frozenset[Any]:
        return frozenset(self.dots)

    def __contains__(self, elem: object) -> bool:
        return elem in self.dots

    def __len__(self) -> int:
        return len(self.dots)

    def _body(self) -> dict[str, Any]:
        return {
            "entries": [[e, sorted([n, c] for n, c in d)] for e, d in self.dots.items()],
            "context": dict(sorted(self.context.items())),
        }

    @classmethod
    def _from_body(cls, doc: Mapping[str, Any]) -> ORSet:
        dots = {_element(e): frozenset((str(n), int(c)) for n, c in d) for e, d in doc["entries"]}
        return cls(dots, {str(k): int(v) for k, v in doc["context"].items()})


@attrs.frozen
class LWWMap(CRDT):
    """A JSON object as per-key LWW registers; removes are stamped tombstones."""

    TAG: ClassVar[str] = "lwwmap"
    entries: dict[str, tuple[bool, Any, Stamp]] = attrs.field(factory=dict)

    def _put(self, key: str, live: bool, value: Any, stamp: Stamp) -> LWWMap:
        if not isinstance(key, str):
            raise InvalidArgument(f"LWW-Map keys are strings, got {key!r}")
        current = self.entries.get(key)
        if current is not None and not _wins((stamp, (live, value)), (current[2], current[:2])):
            return self
        entries = dict(self.entries)
        entries[key] = (live, value, stamp)
        return LWWMap(entries)

    def set(self, key: str, value: Any, stamp: Stamp) -> LWWMap:
        """This map with ``key`` set to ``value`` at ``stamp`` (an older stamp than the key's
        changes nothing)."""
        return self._put(key, True, value, stamp)

    def remove(self, key: str, stamp: Stamp) -> LWWMap:
        """This map with ``key`` removed at ``stamp`` (a stamped tombstone)."""
        return self._put(key, False, None, stamp)

    def merge(self, other: LWWMap) -> LWWMap:
        self._check_same(other)
        entries = dict(self.entries)
        for key, entry in other.entries.items():
            mine = entries.get(key)
            if mine is None or _wins((entry[2], entry[:2]), (mine[2], mine[:2])):
                entries[key] = entry
        return LWWMap(entries)

    @property
    def value(self) -> dict[str, Any]:
        return {k: v for k, (live, v, _) in sorted(self.entries.items()) if live}

    def _body(self) -> dict[str, Any]:
        return {
            "entries": {
                k: [live, v, s.to_doc()] for k, (live, v, s) in sorted(self.entries.items())
            }
        }

    @classmethod
    def _from_body(cls, doc: Mapping[str, Any]) -> LWWMap:
        return cls(
            {
                str(k): (bool(live), v, Stamp.from_doc(s))
                for k, (live, v, s) in doc["entries"].items()
            }
        )
