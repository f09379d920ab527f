"""Values, keys and TTLs the conformance cases feed every backend."""

from __future__ import annotations

import uuid
from typing import Any

__all__ = ["BAD_KEYS", "BAD_TTLS", "BAD_VALUES", "JSON_VALUES"]


class _Opaque:
    pass


JSON_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    2**100,
    -(2**80),
    0.0,
    -0.0,
    1.5,
    -2.25e-300,
    1.7976931348623157e308,
    "",
    "x",
    "ünïcödé ✓ 🚀",
    "\u0000nul",
    'quote" back\\slash\nnewline',
    [],
    {},
    [1, "a", None, [2, [3, {}]]],
    {"nested": {"deep": [{"k": "v"}, 1.25, None]}, "": "empty key", "big": 10**30},
]
"""Values every backend must store and read back exactly."""

BAD_VALUES: list[Any] = [
    {1, 2},
    b"bytes",
    _Opaque(),
    float("nan"),
    float("inf"),
    -float("inf"),
    {1: "int key"},
    {"nested": {"x": float("nan")}},
    [uuid.uuid4()],
    "\ud800",
    object,
    {(1, 2): 3},
]
"""Values every backend must refuse with ``SerializationError``, writing nothing."""

BAD_KEYS: list[Any] = [
    "",
    " ",
    "has space",
    "a*b",
    "*",
    ">",
    "a.>",
    "a..b",
    ".lead",
    "trail.",
    "ünï",
    "tab\t",
    "new\nline",
    "k" * 1025,
    None,
    42,
    b"bytes",
]
"""Keys every backend must refuse with ``InvalidKey``, writing nothing."""

BAD_TTLS: list[Any] = [0, -1, 0.5, 0.999, float("nan"), float("inf"), "10", True, [5]]
"""TTLs every backend must refuse with ``InvalidArgument``, writing nothing."""
