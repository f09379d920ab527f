"""The one value codec every backend uses: JSON documents in, UTF-8 JSON bytes out.

A storable value is a JSON document built from ``None``, ``bool``, ``int``, finite ``float``,
``str``, ``list`` (tuples are stored as lists) and ``dict`` with ``str`` keys, nested at most
:data:`MAX_DEPTH` deep, encoding to at most ``max_value_bytes`` (default 1 MiB, the NATS default
max payload). Anything else (sets, bytes, datetimes, arbitrary objects, NaN and infinities, lone
surrogates) raises :class:`~msstore.errors.SerializationError` *before* anything is written.

Values round-trip exactly, including integers of any size: orjson encodes and decodes the common
case; a document holding an integer beyond 64 bits (which orjson rejects on encode and turns into
a float on decode) is encoded by the standard library with one leading space, which JSON allows
and orjson never writes, and that space sends it back through the standard library on decode.
Documents written by other tools carry no such mark: an integer beyond 64 bits in them comes
back as a float, so such tools should write huge numbers as strings.

Records (attrs classes such as a user's agent model) are (un)structured by a cattrs converter
configured for orjson (``cattrs.preconf.orjson``) and then go through the same rules.

Encode once: :meth:`Codec.encode_canonical` returns an :class:`Encoded` (keys sorted, so equal
values give equal bytes), and every store takes an ``Encoded`` in place of a value and keeps its
bytes as they are. The hybrid manager encodes each write this way once for KV, L1 and SQL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any, Final, TypeVar

import attrs
import cattrs.preconf.orjson
import orjson

from msstore.errors import InvalidArgument, SerializationError

__all__ = [
    "DEFAULT_MAX_VALUE_BYTES",
    "MAX_DEPTH",
    "Codec",
    "Encoded",
    "default_codec",
    "has_nul",
]

T = TypeVar("T")

DEFAULT_MAX_VALUE_BYTES: Final = 1024 * 1024
MAX_DEPTH: Final = 128

_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1
# Marks a document that needs the exact (standard library) decoder; see the module docstring.
# A per-read scan for long digit runs instead costs about a third of a 1 KiB read.
_EXACT_MARK: Final = b" "
_ORJSON_OPTS: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_BIG_INT: Final = 1
_EXPONENT: Final = 2
# orjson, like repr(), writes a float of this magnitude or more with a positive exponent.
_EXPONENT_FROM: Final = 1e16


@attrs.frozen(slots=True)
class Encoded:
    """A value's stored form, as a :class:`Codec` made it, and what validating it found out.

    Stores take it in place of a value and store ``data`` as it is (after the size limit), so a
    value encoded once (by the hybrid manager, say) is not encoded again by each tier.
    """

    data: bytes
    exponent_floats: bool
    """It holds a float written with a positive exponent (``1e+16``): a reader that parses
    JSON numbers as decimals (PostgreSQL's JSONB) turns such a float into an integer."""
    canonical: bool = False
    """Object keys are sorted (:meth:`Codec.encode_canonical`): equal values, equal bytes."""

    @classmethod
    def canonical_bytes(cls, data: bytes) -> Encoded:
        """``data`` that :meth:`Codec.encode_canonical` returned earlier (kept as bytes)."""
        return cls(data, b"e+" in data, canonical=True)  # orjson and repr() write 1e+16


def _reject(obj: object) -> None:
    raise TypeError(f"{type(obj).__name__} is not a JSON type")


def _check(value: object, depth: int) -> int:
    """Validate a JSON document; return flags: ``_BIG_INT`` if it holds an integer beyond
    64 bits, ``_EXPONENT`` if a float whose JSON form has a positive exponent.

    Containers check their plain leaves (str, bool, None, int, float) inline: a call per
    element costs more than the rest of a small document's encoding.
    """
    t = type(value)
    items: Iterable[object]
    if t is dict:
        _check_keys(value)  # type: ignore[arg-type]
        items = value.values()  # type: ignore[attr-defined]
    elif t is list or t is tuple:
        items = value  # type: ignore[assignment]
    else:
        return _check_other(value, depth)
    if depth >= MAX_DEPTH:
        raise SerializationError(f"value is nested deeper than {MAX_DEPTH} levels")
    flags = 0
    for item in items:
        ti = type(item)
        if ti is str or ti is bool or item is None:
            continue
        if ti is int:
            if not (_INT64_MIN <= item <= _UINT64_MAX):  # type: ignore[operator]
                flags |= _BIG_INT
        elif ti is float:
            if not (-_EXPONENT_FROM < item < _EXPONENT_FROM):  # type: ignore[operator]
                flags |= _float_flags(item)  # type: ignore[arg-type]
        else:
            flags |= _check(item, depth + 1)
    return flags


def _check_keys(value: dict[object, object]) -> None:
    for k in value:
        if type(k) is not str and not isinstance(k, str):
            raise SerializationError(
                f"dict key {k!r} is a {type(k).__name__}, not a str",
                hint="JSON object keys are strings",
            )


def _float_flags(value: float) -> int:
    if not math.isfinite(value):
        raise SerializationError(
            f"{value!r} is not a JSON number", hint="store NaN or infinity as a string or null"
        )
    return _EXPONENT if abs(value) >= _EXPONENT_FROM else 0


def _check_other(value: object, depth: int) -> int:
    """``_check`` for a top-level scalar and for subclasses of the JSON types."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, (str, int)):  # also str / int subclasses such as StrEnum, IntEnum
        big = isinstance(value, int) and not (_INT64_MIN <= value <= _UINT64_MAX)
        return _BIG_INT if big else 0
    if isinstance(value, float):
        return _float_flags(float(value))
    if isinstance(value, dict):
        return _check(dict(value), depth)
    if isinstance(value, (list, tuple)):
        return _check(list(value), depth)
    raise SerializationError(
        f"a {type(value).__name__} is not a JSON value",
        hint="convert it to dict/list/str/int/float/bool/None first",
    )


class Codec:
    """Encode and decode stored values. Immutable; share one instance freely."""

    __slots__ = ("_converter", "max_value_bytes")

    def __init__(self, *, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> None:
        if type(max_value_bytes) is not int or max_value_bytes < 1:
            raise InvalidArgument(
                f"max_value_bytes must be a positive int, not {max_value_bytes!r}"
            )
        self.max_value_bytes = max_value_bytes
        self._converter = cattrs.preconf.orjson.make_converter()

    def encode(self, value: object) -> bytes:
        """Return the stored form of ``value`` or raise :class:`SerializationError`.

        An :class:`Encoded` value is returned as it is, once its size is checked.
        """
        if type(value) is Encoded:
            self._check_size(value.data)
            return value.data
        return self._encode(value, sort_keys=False).data

    def encode_canonical(self, value: object) -> Encoded:
        """Like :meth:`encode`, with object keys sorted: equal values give equal bytes (what
        checksums are taken of), for stores that keep no key order anyway (JSONB)."""
        if type(value) is Encoded:
            if value.canonical:
                self._check_size(value.data)
                return value
            value = self.decode(value.data)
        return self._encode(value, sort_keys=True)

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.max_value_bytes:
            raise SerializationError(
                f"encoded value is {len(data)} bytes, over the {self.max_value_bytes} byte limit",
                hint="split the value or raise max_value_bytes (NATS caps payloads at 1 MiB "
                "unless the server's max_payload is raised)",
            )

    def _encode(self, value: object, *, sort_keys: bool) -> Encoded:
        try:
            flags = _check(value, 0)
        except RecursionError:
            raise SerializationError("value is too deeply nested") from None
        try:
            if flags & _BIG_INT:
                data = _EXACT_MARK + json.dumps(
                    value,
                    ensure_ascii=False,
                    separators=(",", ":"),
                    allow_nan=False,
                    sort_keys=sort_keys,
                ).encode("utf-8")
            else:
                options = _ORJSON_OPTS | orjson.OPT_SORT_KEYS if sort_keys else _ORJSON_OPTS
                data = orjson.dumps(value, default=_reject, option=options)
        except (TypeError, ValueError) as err:  # orjson.JSONEncodeError is a TypeError
            raise SerializationError(f"value cannot be encoded as JSON: {err}") from None
        self._check_size(data)
        return Encoded(data, bool(flags & _EXPONENT), canonical=sort_keys)

    def decode(self, data: bytes | bytearray | memoryview | str) -> Any:
        """Return the value stored as ``data``; raise :class:`SerializationError` if not JSON."""
        try:
            if data[:1] != _EXACT_MARK:
                return orjson.loads(data)
            return json.loads(bytes(data) if isinstance(data, memoryview) else data)
        except (ValueError, UnicodeDecodeError) as err:
            raise SerializationError(f"stored bytes are not valid JSON: {err}") from None

    # Records ---------------------------------------------------------------------------

    def unstructure(self, obj: object) -> Any:
        """Turn an attrs record (or nested records) into a JSON document."""
        try:
            return self._converter.unstructure(obj)
        except Exception as err:
            raise SerializationError(f"cannot unstructure {type(obj).__name__}: {err}") from err

    def structure(self, value: object, cls: type[T]) -> T:
        """Build a ``cls`` record from a JSON document (the inverse of :meth:`unstructure`)."""
        try:
            return self._converter.structure(value, cls)
        except Exception as err:
            raise SerializationError(f"cannot structure {cls.__name__}: {err}") from err

    def encode_record(self, obj: object) -> bytes:
        """An attrs record (cattrs-unstructured) as stored bytes."""
        return self.encode(self.unstructure(obj))

    def decode_record(self, data: bytes, cls: type[T]) -> T:
        """Stored bytes back as a ``cls`` record (cattrs-structured)."""
        return self.structure(self.decode(data), cls)


default_codec: Final = Codec()
"""The codec backends use unless given another."""


def has_nul(value: Any) -> bool:
    """True if any string in ``value`` (keys included) holds U+0000, which JSONB cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_nul(v) for v in value)
    return False
