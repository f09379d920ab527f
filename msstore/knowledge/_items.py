"""Items: JSON documents by namespace and key, with time-to-live, searched on the knowledge base.

:class:`Items` is a document store in the shape LangGraph's long-term memory uses (a namespace
is a tuple of labels, an item a JSON object under a key in it), kept as keyed facts of a
:class:`~msstore.knowledge.KnowledgeBase`, so its search is the knowledge base's vector (and,
with ``search_mode="hybrid"``, full-text) search. The rules, written once here:

* an item is the keyed fact ``msstore.item`` whose key encodes its namespace and key
  (:func:`item_key`); putting it again replaces it (version-guarded), ``None`` deletes it;
* ``text`` is what is embedded and searched; an item put without text is stored but never
  ranked: a query search returns ranked items first, then fills up with unindexed ones
  (unscored), as LangGraph's own stores do;
* a ``ttl`` (seconds) makes an item expire that long after its last write, or its last read
  when reads refresh (``refresh_on_read``); expired items are never returned, even before
  :meth:`Items.sweep` deletes them. A refresh never overwrites a newer write (it is
  version-guarded too);
* a filter keeps items whose value has each key equal to the given value, or satisfying
  ``{"$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte": operand}``;
* unranked results are in key order (namespace, then key).
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

from msstore import keys as keygrammar
from msstore._internal.ttl import check_ttl
from msstore.errors import InvalidArgument, InvalidKey
from msstore.spi import check_int

from ._base import MODES, KnowledgeBase
from ._facts import Fact, FactFilter, content_hash

__all__ = [
    "ENTITY",
    "UNINDEXED",
    "Item",
    "ItemPut",
    "Items",
    "check_filter",
    "item_key",
    "matches_filter",
    "parse_item_key",
]

ENTITY: Final = "msstore.item"
"""The entity type of the facts that hold items."""
UNINDEXED: Final = "msstore:unindexed-item"
"""The text of an item put without text: one shared vector, never ranked."""
ROOT: Final = "items"
SCAN_ALL: Final = 2**31 - 1
MAX_FETCH: Final = 10_000


@attrs.frozen
class Item:
    """A stored item: its value, when it was first put and last written (Unix seconds),
    and ``score`` (similarity, higher is better) when a query search ranked it."""

    namespace: tuple[str, ...]
    key: str
    value: Mapping[str, Any]
    created_at: float
    updated_at: float
    score: float | None = None


@attrs.frozen
class ItemPut:
    """One write: ``value`` None deletes the item. ``text`` is what search embeds (None: not
    indexed); ``ttl`` seconds until it expires (None: never)."""

    namespace: tuple[str, ...]
    key: str
    value: Mapping[str, Any] | None
    text: str | None = None
    ttl: float | None = None


def _check_namespace(namespace: object, field: str = "namespace") -> tuple[str, ...]:
    if not isinstance(namespace, tuple) or not all(
        isinstance(label, str) and label for label in namespace
    ):
        raise InvalidArgument(f"{field} must be a tuple of non-empty str, got {namespace!r}")
    return namespace


def item_key(namespace: tuple[str, ...], key: str) -> str:
    """The fact key of an item: ``items.<label>...<label>.==<key>``, each part quoted with
    :func:`msstore.keys.quote_token` (whose output never starts with ``==``)."""
    _check_namespace(namespace)
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"key must be a non-empty str, got {key!r}")
    labels = "".join(f"{keygrammar.quote_token(label)}." for label in namespace)
    try:
        return keygrammar.check_key(f"{ROOT}.{labels}=={keygrammar.quote_token(key)}")
    except InvalidKey:
        raise InvalidArgument(
            f"namespace {namespace!r} with key {key[:64]!r} is too long: encoded it is over "
            f"{keygrammar.MAX_KEY_LENGTH} characters"
        ) from None


def _prefix(namespace: tuple[str, ...]) -> str:
    return f"{ROOT}." + "".join(f"{keygrammar.quote_token(label)}." for label in namespace)


def parse_item_key(fact_key: str) -> tuple[tuple[str, ...], str]:
    """Invert :func:`item_key`."""
    tokens = fact_key.split(".")
    if tokens[0] != ROOT or not tokens[-1].startswith("=="):
        raise InvalidArgument(f"{fact_key!r} is not an item's key")
    namespace = tuple(keygrammar.unquote_token(t) for t in tokens[1:-1])
    return namespace, keygrammar.unquote_token(tokens[-1][2:])


_ORDERS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "$eq": operator.eq,
    "$ne": operator.ne,
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


def _compare(actual: Any, op: str, operand: Any) -> bool:
    try:
        return bool(_ORDERS[op](actual, operand))
    except TypeError:  # (a missing field, or values that do not order)
        return False


OPERATORS: Final = tuple(_ORDERS)


def _is_condition(wanted: object) -> bool:
    return isinstance(wanted, Mapping) and bool(wanted) and all(k in OPERATORS for k in wanted)


def check_filter(flt: object) -> Mapping[str, Any] | None:
    """A filter (see the module docstring), or an error naming the bad operator."""
    if flt is None:
        return None
    if not isinstance(flt, Mapping):
        raise InvalidArgument(f"filter must be a mapping, got {type(flt).__name__}")
    for field, wanted in flt.items():
        if isinstance(wanted, Mapping) and any(str(k).startswith("$") for k in wanted):
            unknown = [k for k in wanted if k not in OPERATORS]
            if unknown:
                raise InvalidArgument(
                    f"filter on {field!r}: unknown operator {unknown[0]!r}; "
                    f"operators are {', '.join(OPERATORS)}"
                )
    return flt


def matches_filter(value: Mapping[str, Any], flt: Mapping[str, Any] | None) -> bool:
    """True if ``value`` satisfies every condition of ``flt``."""
    if not flt:
        return True
    for field, wanted in flt.items():
        actual = value.get(field)
        if _is_condition(wanted):
            if not all(_compare(actual, op, operand) for op, operand in wanted.items()):
                return False
        elif actual != wanted:
            return False
    return True


def _pushed_down(flt: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of a filter a store can check by JSON containment: scalar equalities
    (containment of an object or list is looser than equality; those are checked after)."""
    plain = {
        k: v
        for k, v in (flt or {}).items()
        if isinstance(v, (str, int, float)) and not isinstance(v, bool)
    }
    return plain or None


class Items:
    """Items on a :class:`KnowledgeBase` (see the module docstring).

    ``refresh_on_read``: whether reads restart an item's ttl unless a read says otherwise;
    ``search_mode``: how a query ranks, ``"vector"`` (default: ``score`` is the cosine
    similarity) or the knowledge base's ``"hybrid"`` or ``"text"``.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        *,
        refresh_on_read: bool = True,
        search_mode: str = "vector",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if search_mode not in MODES:
            raise InvalidArgument(
                f"search_mode must be one of {', '.join(MODES)}, got {search_mode!r}"
            )
        if not isinstance(refresh_on_read, bool):
            raise InvalidArgument(f"refresh_on_read must be a bool, got {refresh_on_read!r}")
        self.kb = kb
        self.refresh_on_read = refresh_on_read
        self.search_mode = search_mode
        self._clock = clock

    def __repr__(self) -> str:
        return f"Items({self.kb!r}, search_mode={self.search_mode!r})"

    # writes ----------------------------------------------------------------------------------

    def put_many(self, puts: Sequence[ItemPut]) -> None:
        """Apply writes in order (the last write of a key wins); every put is checked before
        anything is stored, and the puts go in one transaction."""
        latest: dict[str, ItemPut] = {}
        for put in puts:
            if not isinstance(put, ItemPut):
                raise InvalidArgument(f"expected an ItemPut, got {type(put).__name__}")
            fact_key = item_key(put.namespace, put.key)
            if put.value is not None and not isinstance(put.value, Mapping):
                raise InvalidArgument(
                    f"an item's value must be a mapping or None, got {type(put.value).__name__}"
                )
            if put.text is not None and (not isinstance(put.text, str) or not put.text.strip()):
                raise InvalidArgument("an item's text must be a non-empty str or None")
            check_ttl(put.ttl)  # (the knowledge base's ttl rule, as its keyed storage's)
            latest.pop(fact_key, None)
            latest[fact_key] = put
        now = self._clock()
        facts = []
        for fact_key, put in latest.items():
            if put.value is None:
                continue
            stored = self.kb.get_key(fact_key)
            created = now if stored is None else float(stored.evidence.get("created_at", now))
            facts.append(self._fact(fact_key, put, created_at=created, now=now))
        if facts:
            self.kb.add_many(facts)
        for fact_key, put in latest.items():
            if put.value is None:
                self.kb.remove_key(fact_key)

    def put(self, put: ItemPut) -> None:
        """One write (see :meth:`put_many`)."""
        self.put_many([put])

    @staticmethod
    def _fact(
        fact_key: str,
        put: ItemPut,
        *,
        created_at: float,
        now: float,
        version: int | None = None,
    ) -> Fact:
        assert put.value is not None
        evidence: dict[str, Any] = {"created_at": created_at, "updated_at": now}
        if put.ttl is not None:
            evidence["ttl"] = put.ttl
        path = ".".join(keygrammar.quote_token(label) for label in put.namespace)
        return Fact(
            entity_type=ENTITY,
            entity_id=(path if 0 < len(path) <= 255 else content_hash(path)),
            predicate="document",
            value=dict(put.value),
            text=put.text if put.text is not None else UNINDEXED,
            evidence=evidence,
            key=fact_key,
            version=version,
            # (a millisecond early: timestamps round to microseconds on their way to SQL,
            # and an item must read as valid at the moment it was put)
            valid_from=now - 0.001,
            valid_until=None if put.ttl is None else now + put.ttl,
        )

    # reads -----------------------------------------------------------------------------------

    def _item(self, fact: Fact, score: float | None = None) -> Item:
        assert fact.key is not None
        namespace, key = parse_item_key(fact.key)
        created = float(fact.evidence.get("created_at", fact.created_at or 0.0))
        updated = float(fact.evidence.get("updated_at", fact.created_at or 0.0))
        return Item(namespace, key, fact.value, created, updated, score)

    def _refresh(self, facts: Sequence[Fact], refresh: bool | None) -> None:
        """Restart the ttl of the facts read (never over a newer write: version-guarded)."""
        if not (self.refresh_on_read if refresh is None else refresh):
            return
        now = self._clock()
        renewed = []
        for fact in facts:
            ttl = fact.evidence.get("ttl")
            if ttl is None or fact.key is None or fact.version is None:
                continue
            namespace, key = parse_item_key(fact.key)
            put = ItemPut(namespace, key, fact.value, fact.text, float(ttl))
            created = float(fact.evidence.get("created_at", now))
            fresh = self._fact(fact.key, put, created_at=created, now=now, version=fact.version + 1)
            # (a refresh is not a write: the item keeps its updated_at)
            renewed.append(attrs.evolve(fresh, evidence={**fact.evidence}))
        if renewed:
            self.kb.add_many(renewed, skip_stale=True)

    def get(
        self, namespace: tuple[str, ...], key: str, *, refresh: bool | None = None
    ) -> Item | None:
        """The item, or None if there is none or it expired."""
        fact = self.kb.get_key(item_key(namespace, key))
        if fact is None or not fact.valid_at(self._clock()):
            return None
        self._refresh([fact], refresh)
        return self._item(fact)

    def search(
        self,
        namespace_prefix: tuple[str, ...],
        *,
        query: str | None = None,
        filter: Mapping[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        refresh: bool | None = None,
    ) -> list[Item]:
        """Items under ``namespace_prefix`` that pass ``filter``: ranked by ``query`` when
        given (then the unindexed ones, unscored), else in key order; ``limit`` from
        ``offset``."""
        _check_namespace(namespace_prefix, "namespace_prefix")
        flt = check_filter(filter)
        check_int(limit, field="limit", minimum=0)
        check_int(offset, field="offset", minimum=0)
        if limit == 0:
            return []
        base = FactFilter(
            entity_type=ENTITY,
            key_prefix=_prefix(namespace_prefix),
            valid_at=self._clock(),
            where=_pushed_down(flt),
        )
        found: list[tuple[Fact, float | None]] = []
        if query is not None:
            if not isinstance(query, str) or not query.strip():
                raise InvalidArgument("query must be a non-empty str or None")
            found = self._ranked(query, base, flt, limit + offset)
        if len(found) < limit + offset:
            ranked = {f.fact_id for f, _ in found}
            unranked = self._scan(base, flt, limit + offset, indexed=query is None)
            found += [(f, None) for f in unranked if f.fact_id not in ranked]
        page = found[offset : offset + limit]
        self._refresh([f for f, _ in page], refresh)
        return [self._item(f, score) for f, score in page]

    def _ranked(
        self, query: str, base: FactFilter, flt: Mapping[str, Any] | None, want: int
    ) -> list[tuple[Fact, float | None]]:
        fetch = max(want, 10)
        while True:
            hits = self.kb.search(query, k=fetch, mode=self.search_mode, filter=base)
            kept: list[tuple[Fact, float | None]] = [
                (h.fact, h.score)
                for h in hits
                if h.fact.text != UNINDEXED and matches_filter(h.fact.value, flt)
            ]
            if len(kept) >= want or len(hits) < fetch or fetch >= MAX_FETCH:
                return kept[:want]
            fetch = min(fetch * 4, MAX_FETCH)

    def _scan(
        self, base: FactFilter, flt: Mapping[str, Any] | None, want: int, *, indexed: bool
    ) -> list[Fact]:
        """Up to ``want`` facts passing ``flt``, in key order (only unindexed ones unless
        ``indexed``)."""
        fetch = want
        while True:
            facts = self.kb.store.scan(base, fetch)
            kept = [
                f
                for f in facts
                if (indexed or f.text == UNINDEXED) and matches_filter(f.value, flt)
            ]
            if len(kept) >= want or len(facts) < fetch:
                return kept[:want]
            fetch *= 4

    def list_namespaces(
        self,
        *,
        prefix: tuple[str, ...] = (),
        suffix: tuple[str, ...] = (),
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[tuple[str, ...]]:
        """The namespaces holding live items, sorted; ``prefix`` / ``suffix`` match their
        first / last labels (``"*"`` matches any one label); ``max_depth`` truncates them
        (then deduplicated)."""
        _check_namespace(prefix, "prefix")
        _check_namespace(suffix, "suffix")
        check_int(limit, field="limit", minimum=0)
        check_int(offset, field="offset", minimum=0)
        if max_depth is not None:
            check_int(max_depth, field="max_depth", minimum=1)
        exact = tuple(prefix[: prefix.index("*")] if "*" in prefix else prefix)
        facts = self.kb.store.scan(
            FactFilter(entity_type=ENTITY, key_prefix=_prefix(exact), valid_at=self._clock()),
            SCAN_ALL,
        )
        found: set[tuple[str, ...]] = set()
        for fact in facts:
            assert fact.key is not None
            namespace, _ = parse_item_key(fact.key)
            if _matches(namespace, prefix) and _matches(namespace[::-1], suffix[::-1]):
                found.add(namespace if max_depth is None else namespace[:max_depth])
        return sorted(found)[offset : offset + limit]

    # expiry ----------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Delete the expired items (unless written or refreshed since); how many went."""
        now = self._clock()
        facts = self.kb.store.scan(FactFilter(entity_type=ENTITY, key_prefix=f"{ROOT}."), SCAN_ALL)
        gone = 0
        for fact in facts:
            if fact.valid_until is not None and fact.valid_until <= now:
                assert fact.key is not None and fact.version is not None
                gone += self.kb.remove_key(fact.key, below_version=fact.version + 1)
        return gone


def _matches(namespace: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """``namespace`` starts with ``pattern`` (``"*"`` any one label)."""
    return len(namespace) >= len(pattern) and all(
        p in ("*", n) for p, n in zip(pattern, namespace, strict=False)
    )
