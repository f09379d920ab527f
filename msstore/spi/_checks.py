"""Argument checks every store and option class shares: each refuses bad input with an
``InvalidArgument`` that names the field and the accepted range, and never coerces."""

from __future__ import annotations

import math

from msstore.errors import InvalidArgument

__all__ = ["check_bool", "check_int", "check_seconds"]


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
