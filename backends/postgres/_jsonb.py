"""Values as JSON text PostgreSQL's JSONB keeps without loss.

JSONB cannot hold U+0000 in a string (``SerializationError``; the state store does not declare
``nul_in_strings``), and it prints numbers without exponents, so a float like ``1e300`` would
read back as an integer: such floats are written in fixed-point with a fraction, which JSONB
keeps and which parses back to the same float. Both take the value's one canonical encoding
(:meth:`msstore.codec.Codec.encode_canonical`), shared with every tier.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final

from msstore.codec import Codec, Encoded, default_codec
from msstore.errors import SerializationError

__all__ = ["jsonb_row", "jsonb_text"]

_POSITIVE_EXPONENT: Final = re.compile(rb"[0-9][eE]\+?[0-9]")


def _dump(value: Any, out: list[str]) -> None:
    """JSON text with floats that JSONB keeps as floats (the slow path; see module doc)."""
    if isinstance(value, float) and not isinstance(value, bool):
        text = repr(value)
        if "e" in text and "e-" not in text:  # a positive exponent: JSONB would drop the '.'
            text = format(value, ".1f")
        out.append(text)
    elif isinstance(value, dict):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(k, ensure_ascii=False))
            out.append(":")
            _dump(v, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _dump(item, out)
        out.append("]")
    else:
        out.append(json.dumps(value, ensure_ascii=False))


def jsonb_text(value: Any, codec: Codec = default_codec) -> str:
    """``value`` as JSON text PostgreSQL's JSONB stores without loss, or ``SerializationError``.

    ``value`` may be an :class:`~msstore.codec.Encoded` (used as it is when canonical)."""
    return _jsonb(codec.encode_canonical(value), codec)


def jsonb_row(value: Any, codec: Codec = default_codec) -> tuple[str, str]:
    """``jsonb_text(value)`` and the SHA-256 (hex) of the canonical JSON (keys sorted, compact):
    the state table's checksum, taken of the same, single encoding."""
    encoded = value if type(value) is Encoded and value.canonical else None
    if encoded is None or len(encoded.data) > codec.max_value_bytes:
        encoded = codec.encode_canonical(value)  # (raises on an oversize value)
    data = encoded.data
    if data[:1] == b" ":  # (the mark of a document with big integers; see the codec)
        data = data.lstrip(b" ")
    return _jsonb(encoded, codec), hashlib.sha256(data).hexdigest()


def _jsonb(encoded: Encoded, codec: Codec) -> str:
    raw = encoded.data  # validation, size limit, encoding: once, shared with every tier
    if b"\\u0000" in raw:
        raise SerializationError(
            "PostgreSQL JSONB cannot store U+0000 in a string",
            hint="strip or replace NUL characters before storing",
        )
    if not encoded.exponent_floats or _POSITIVE_EXPONENT.search(raw) is None:
        return raw.decode("utf-8").lstrip(" ")  # (the space marks big integers; see codec)
    out: list[str] = []
    _dump(codec.decode(raw), out)
    return "".join(out)
