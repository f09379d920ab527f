"""Time-to-live arithmetic shared by every backend.

TTLs are whole seconds, at least one. A ``float`` or ``timedelta`` with a fraction is rounded
**up** to the next second (a value never lives shorter than asked). Sub-second, zero, negative,
NaN, infinite and boolean TTLs are rejected with :class:`~msstore.errors.InvalidArgument`: JetStream
truncates sub-second message TTLs and refuses them, so no backend accepts them.
"""

from __future__ import annotations

import datetime
import math
from typing import Final

from msstore.errors import InvalidArgument

__all__ = ["MAX_TTL_SECONDS", "check_ttl", "expiry"]

MAX_TTL_SECONDS: Final = 100 * 365 * 24 * 3600
"""The longest TTL accepted: 100 years."""


def check_ttl(ttl: object) -> int | None:
    """Return ``ttl`` as whole seconds (``None`` for no TTL) or raise ``InvalidArgument``."""
    if ttl is None:
        return None
    if isinstance(ttl, datetime.timedelta):
        seconds: float = ttl.total_seconds()
    elif type(ttl) in (int, float):
        seconds = ttl  # type: ignore[assignment]
    else:
        raise InvalidArgument(f"ttl must be seconds (int or float) or a timedelta, not {ttl!r}")
    if not math.isfinite(seconds) or seconds < 1:
        raise InvalidArgument(
            f"ttl must be at least 1 second, got {ttl!r}",
            hint="JetStream cannot expire values faster than once a second",
        )
    if seconds > MAX_TTL_SECONDS:
        raise InvalidArgument(
            f"ttl {ttl!r} is over {MAX_TTL_SECONDS} seconds (100 years)",
            hint="pass ttl=None for values that never expire",
        )
    return math.ceil(seconds)


def expiry(now: float, key_ttl: int | None, bucket_ttl: int | None) -> float | None:
    """When a value written at ``now`` expires: its own TTL wins over the bucket's."""
    ttl = key_ttl if key_ttl is not None else bucket_ttl
    return None if ttl is None else now + ttl
