"""JSON containment, as PostgreSQL's ``jsonb @> jsonb``, for backends that filter in Python."""

from __future__ import annotations

from typing import Any

__all__ = ["contains"]


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
