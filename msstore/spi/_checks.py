"""Argument checks every store and option class shares: each refuses bad input with an
``InvalidArgument`` that names the field and the accepted range, and never coerces."""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterable, Mapping
from typing import Any

from msstore.errors import InvalidArgument

__all__ = [
    "check_bool",
    "check_int",
    "check_many",
    "check_mapping",
    "check_pairs",
    "check_seconds",
]

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


def check_seconds(
    value: object, *, field: str, minimum: float = 0.0, inclusive: bool = False
) -> float:
    """A finite number of seconds above ``minimum`` (or equal to it with ``inclusive``), as a
    float; bools, strings and NaN are refused."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < minimum
        or (value == minimum and not inclusive)
    ):
        bound = f"{'>=' if inclusive else '>'} {minimum:g}"
        raise InvalidArgument(f"{field} must be a finite number of seconds {bound}, got {value!r}")
    return float(value)


def check_int(
    value: object, *, field: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An ``int`` (not a bool) within ``minimum`` .. ``maximum`` (each optional)."""
    if (
        type(value) is not int
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        if minimum is not None and maximum is not None:
            bound = f" from {minimum:,} to {maximum:,}"
        elif minimum is not None:
            bound = f" >= {minimum:,}"
        elif maximum is not None:
            bound = f" <= {maximum:,}"
        else:
            bound = ""
        raise InvalidArgument(f"{field} must be an int{bound}, got {value!r}")
    return value


def check_bool(value: object, *, field: str) -> bool:
    """``True`` or ``False`` (not 0, 1 or a string)."""
    if type(value) is not bool:
        raise InvalidArgument(f"{field} must be a bool, got {value!r}")
    return value


def _one(value: object) -> str:
    """How to name a single value where several were expected."""
    if isinstance(value, (str, bytes, bytearray)):
        return f"the {type(value).__name__} {_short.repr(value)}"
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} (a mapping, not a list)"
    return f"a single {type(value).__name__} {_short.repr(value)}"


def check_many(value: object, *, field: str, of: str) -> list[Any]:
    """Several items (a list, tuple, set or any other iterable) as a list. One item alone is
    refused, with a hint to wrap it in a list: a string or bytes (which would iterate its
    characters), a mapping (its keys), or anything not iterable (a UUID, a record)."""
    if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Iterable):
        raise InvalidArgument(
            f"{field} must be a list of {of}, got {_one(value)}",
            hint=f"pass a list, even for one: {field}=[...]",
        )
    return list(value)


def check_mapping(value: object, *, field: str, optional: bool = False) -> Mapping[str, Any]:
    """A mapping (a dict); ``None`` too with ``optional`` (as an empty one)."""
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        wanted = "a mapping (a dict)" + (" or None" if optional else "")
        raise InvalidArgument(
            f"{field} must be {wanted}, got {type(value).__name__} {_short.repr(value)}"
        )
    return value


def check_pairs(
    items: object, *, field: str, of: str = "(key, value) pairs"
) -> list[tuple[Any, Any]]:
    """Keys and values: a mapping, or pairs (``of`` names them), as a list of pairs."""
    if isinstance(items, Mapping):
        return list(items.items())
    pairs = check_many(items, field=field, of=f"{of}, or a mapping")
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InvalidArgument(
                f"{field} must be {of} (or a mapping); item {i} is {_short.repr(pair)}"
            )
    return [(k, v) for k, v in pairs]
