"""Typed reads of backend options, which arrive as URL query strings or keyword arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from msstore.errors import InvalidArgument

__all__ = ["check_known", "opt_bool", "opt_int"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def check_known(options: Mapping[str, Any], known: set[str], *, backend: str) -> None:
    """Reject options the backend does not understand (a typo must not pass silently)."""
    unknown = set(options) - known
    if unknown:
        raise InvalidArgument(
            f"{backend} has no option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )


def opt_int(options: Mapping[str, Any], name: str, default: int | None) -> int | None:
    value = options.get(name, default)
    if value is None or (type(value) is int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, str) and value.strip().lower() in {"", "none"}:
        return None
    raise InvalidArgument(f"option {name} must be an integer, got {value!r}")


def opt_bool(options: Mapping[str, Any], name: str, default: bool) -> bool:
    value = options.get(name, default)
    if type(value) is bool:
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidArgument(f"option {name} must be true or false, got {value!r}")
