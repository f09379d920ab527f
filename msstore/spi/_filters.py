"""Search helpers shared by the table stores: query validation, and JSON containment as
PostgreSQL's ``jsonb @> jsonb`` for backends that filter in Python."""

from __future__ import annotations

from typing import Any

from msstore import keys as keygrammar
from msstore.errors import InvalidArgument
from msstore.records import Query

__all__ = ["check_query", "contains"]


def contains(doc: Any, sub: Any) -> bool:
    """True if ``doc`` contains ``sub``.

    Objects contain an object whose every key they hold with a containing value; arrays contain
    an array whose every element some element of theirs contains (order and duplicates do not
    matter), and, at the top level only, a scalar they hold; scalars contain equal scalars
    (``1`` and ``1.0`` are equal, ``True`` and ``1`` are not).
    """
    return _contains(doc, sub, top=True)


def _contains(doc: Any, sub: Any, *, top: bool) -> bool:
    if isinstance(sub, dict):
        return isinstance(doc, dict) and all(
            k in doc and _contains(doc[k], v, top=False) for k, v in sub.items()
        )
    if isinstance(sub, (list, tuple)):
        return isinstance(doc, (list, tuple)) and all(
            any(_contains(d, s, top=False) for d in doc) for s in sub
        )
    if isinstance(doc, (list, tuple)):
        return top and any(_same_scalar(d, sub) for d in doc)
    if isinstance(doc, dict):
        return False
    return _same_scalar(doc, sub)


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, (dict, list, tuple)) or isinstance(b, (dict, list, tuple)):
        return False
    if (type(a) is bool) != (type(b) is bool) or (a is None) != (b is None):
        return False
    return bool(a == b)


def check_query(query: Query | str) -> Query:
    """Normalise and validate a search query (a ``str`` is a key prefix)."""
    if isinstance(query, str):
        query = Query(prefix=query)
    if not isinstance(query, Query):
        raise InvalidArgument(f"query must be a Query or a key prefix, not {query!r}")
    if query.prefix is not None:
        keygrammar.check_prefix(query.prefix)
    if query.where is not None and not isinstance(query.where, dict):
        raise InvalidArgument(f"Query.where must be a dict, not {type(query.where).__name__}")
    if type(query.limit) is not int or query.limit < 1:
        raise InvalidArgument(f"Query.limit must be an int >= 1, got {query.limit!r}")
    return query
