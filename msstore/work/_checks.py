"""Checks the three agent-work stores share: agent ids, task ids, limits, times."""

from __future__ import annotations

import math
import uuid
from typing import Final

from msstore.errors import InvalidArgument

__all__ = [
    "MAX_AGENT_LENGTH",
    "MAX_LIMIT",
    "check_agent",
    "check_limit",
    "check_task_id",
    "check_time",
    "check_uuid",
]

MAX_LIMIT: Final = 1000
"""The most rows one claim, inbox read or listing returns."""
MAX_AGENT_LENGTH: Final = 255


def check_uuid(value: object, *, field: str) -> uuid.UUID:
    """A ``uuid.UUID`` (a string that looks like one is refused: say ``uuid.UUID(s)``)."""
    if not isinstance(value, uuid.UUID):
        raise InvalidArgument(f"{field} must be a uuid.UUID, got {value!r}")
    return value


def check_task_id(task_id: object, *, field: str = "task_id") -> uuid.UUID:
    """A task id: a ``uuid.UUID`` (a string is refused, not parsed)."""
    return check_uuid(task_id, field=field)


def check_agent(agent_id: object, *, field: str = "agent_id") -> str:
    """An agent's token: 1-255 characters, no ``.`` (it is one token of a key or subject) and
    no whitespace."""
    if type(agent_id) is not str or not 0 < len(agent_id) <= MAX_AGENT_LENGTH:
        raise InvalidArgument(
            f"{field} must be a non-empty str of at most {MAX_AGENT_LENGTH} characters, "
            f"got {agent_id!r}"
        )
    if "." in agent_id or any(c.isspace() for c in agent_id):
        raise InvalidArgument(f"{field} must not contain '.' or whitespace, got {agent_id!r}")
    return agent_id


def check_limit(limit: object) -> int:
    """A page or batch size: an int from 1 to ``MAX_LIMIT``."""
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be an int from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


def check_time(value: object, *, field: str, optional: bool = False) -> float | None:
    """Unix seconds: a finite int or float (bools refused); ``None`` too when ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgument(f"{field} must be Unix seconds (a finite number), got {value!r}")
    return float(value)
