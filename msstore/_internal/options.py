"""Typed reads of backend options, which arrive as URL query strings or keyword arguments."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Set
from typing import Any

from msstore.errors import InvalidArgument

__all__ = ["check_known", "opt_bool", "opt_choice", "opt_float", "opt_int"]

_INT = re.compile(r"[-+]?[0-9]+")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def check_known(options: Mapping[str, Any], known: Set[str], *, backend: str) -> None:
    """Reject options the backend does not understand (a typo must not pass silently)."""
    unknown = set(options) - known
    if unknown:
        raise InvalidArgument(
            f"{backend} has no option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )


def _range(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f" >= {minimum:g}"
    return ""


def opt_int(
    options: Mapping[str, Any],
    name: str,
    default: int | None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    nullable: bool = False,
) -> int | None:
    """Option ``name`` as an int in ``[minimum, maximum]``; ``InvalidArgument`` naming the
    option and the range otherwise (never clamped). ``nullable`` lets ``""`` or ``none`` mean
    no value."""
    value = options.get(name, default)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in {"", "none"} and nullable:
        return None
    want = f"option {name} must be an integer{_range(minimum, maximum)}"
    if type(value) is int:
        number = value
    elif isinstance(value, str) and _INT.fullmatch(value.strip()):
        number = int(value)
    else:
        raise InvalidArgument(f"{want}, got {value!r}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise InvalidArgument(f"{want}, got {value!r}")
    return number


def opt_float(
    options: Mapping[str, Any],
    name: str,
    default: float,
    *,
    above: float = 0.0,
    maximum: float | None = None,
    inclusive: bool = False,
) -> float:
    """Option ``name`` as a finite number above ``above`` (or equal to it, ``inclusive``) and
    at most ``maximum``."""
    value = options.get(name, default)
    bound = f"{'>=' if inclusive else '>'} {above:g}"
    want = f"option {name} must be a finite number of seconds {bound}" + (
        "" if maximum is None else f" and <= {maximum:g}"
    )
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidArgument(f"{want}, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise InvalidArgument(f"{want}, got {value!r}") from None
    if (
        not math.isfinite(number)
        or number < above
        or (number == above and not inclusive)
        or (maximum is not None and number > maximum)
    ):
        raise InvalidArgument(f"{want}, got {value!r}")
    return number


def opt_bool(options: Mapping[str, Any], name: str, default: bool) -> bool:
    """URL option ``name`` as a bool (true/false, 1/0, yes/no, or a bool keyword),
    ``default`` when absent; anything else is an ``InvalidArgument`` naming it."""
    value = options.get(name, default)
    if type(value) is bool:
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidArgument(f"option {name} must be true or false (or 1/0, yes/no), got {value!r}")


def opt_choice(
    options: Mapping[str, Any], name: str, default: str, choices: tuple[str, ...]
) -> str:
    """URL option ``name``, one of ``choices`` (``default`` when absent); anything else is an
    ``InvalidArgument`` naming the choices."""
    value = options.get(name, default)
    if value not in choices:
        raise InvalidArgument(f"option {name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)
