"""Channel values stored as deltas on the previous version.

A chat's message list grows by a message or two per step, and a graph library stores the whole
list at every version: storage grows with the square of the conversation. Serialized, the new
list is the old one with a different length header and the new messages after it; :func:`encode`
finds the old value's body (its bytes after a header of up to :data:`MAX_HEADER` bytes) in the
new value, near its start, and stores only what is around it. Any other change (a message
edited, removed, a summary replacing the list) does not match and the value is stored whole.

A delta's base is the channel's previous version in the same thread and namespace; a chain is
at most :data:`MAX_CHAIN` deltas long before a whole value is stored again, so a read rebuilds
a value from at most that many rows.
"""

from __future__ import annotations

import struct
from typing import Final

from msstore.errors import SerializationError

__all__ = ["MAX_CHAIN", "MAX_HEADER", "MIN_BODY", "apply", "encode"]

MAX_HEADER: Final = 9
"""How many leading bytes of either value a delta may skip or replace (a msgpack or CBOR
array header is at most 9 bytes)."""
MIN_BODY: Final = 64
"""Values shorter than this are stored whole (a delta would not pay)."""
MAX_CHAIN: Final = 16
"""At most this many deltas in a row before a whole value."""
_FRAME: Final = struct.Struct("<III")  # skip, body length, head length


def encode(old: bytes, new: bytes) -> bytes | None:
    """``new`` as a delta on ``old``, or None when it does not pay (under half of ``new``)."""
    if len(old) < MIN_BODY or len(new) < MIN_BODY:
        return None
    for skip in range(min(MAX_HEADER, len(old) - MIN_BODY) + 1):
        body = old[skip:]
        pos = new.find(body, 0, MAX_HEADER + len(body))
        if pos < 0:
            continue
        head, tail = new[:pos], new[pos + len(body) :]
        delta = _FRAME.pack(skip, len(body), len(head)) + head + tail
        return delta if len(delta) * 2 < len(new) else None
    return None


def apply(old: bytes, delta: bytes) -> bytes:
    """The value ``delta`` encodes on ``old``."""
    try:
        skip, length, head = _FRAME.unpack_from(delta)
    except struct.error:
        raise SerializationError("a stored channel delta is truncated") from None
    body = old[skip : skip + length]
    if len(body) != length or skip + length != len(old) or _FRAME.size + head > len(delta):
        raise SerializationError("a stored channel delta does not fit its base value")
    return delta[_FRAME.size : _FRAME.size + head] + body + delta[_FRAME.size + head :]
