"""The key grammar shared by every backend.

A key is 1 to 1,024 ASCII characters from ``A-Z a-z 0-9 - / _ = .``, split into tokens by
``.``; no token is empty (so no leading, trailing or doubled dots). This is the subset of NATS
subjects that JetStream KV accepts as a key, and it is stored as-is in PostgreSQL, so a key means
the same thing in every tier.

Keys that break the grammar are **rejected** with :class:`~msstore.errors.InvalidKey`, never
rewritten silently. To store an arbitrary string (spaces, ``*``, ``>``, unicode, empty) as part
of a key, encode it first with :func:`quote_token`, which is reversible (:func:`unquote_token`)
and yields a single valid token::

    key = f"agent.{quote_token(user_name)}.state"

Patterns (for ``keys()`` and ``watch()``) use the NATS wildcards as whole tokens: ``*`` matches
exactly one token, ``>`` matches one or more trailing tokens.
"""

from __future__ import annotations

import re

from msstore.errors import InvalidKey

__all__ = [
    "MAX_KEY_LENGTH",
    "agent_of",
    "check_key",
    "check_pattern",
    "check_prefix",
    "is_pattern",
    "match",
    "quote_token",
    "unquote_token",
]

MAX_KEY_LENGTH = 1024

_KEY = re.compile(r"[-/_=a-zA-Z0-9]+(?:\.[-/_=a-zA-Z0-9]+)*")
_PREFIX = re.compile(r"[-/_=a-zA-Z0-9.]*")
_TOKEN_SAFE = frozenset(b"-/_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_HINT = (
    "keys are 1-1024 characters of A-Z a-z 0-9 - / _ = and '.' between non-empty tokens; "
    "encode other text with msstore.keys.quote_token()"
)


def check_key(key: object) -> str:
    """Return ``key`` if it follows the grammar, else raise :class:`InvalidKey`."""
    if type(key) is not str:
        raise InvalidKey(f"key must be a str, not {type(key).__name__}", hint=_HINT)
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(
            f"key is {len(key)} characters long, over the {MAX_KEY_LENGTH} limit",
            key=key[:64] + "...",
            hint=_HINT,
        )
    if _KEY.fullmatch(key) is None:
        raise InvalidKey(f"invalid key {key!r}", key=key, hint=_HINT)
    return key


def agent_of(key: str) -> str:
    """The agent a key belongs to: its first token (``"a1"`` for ``"a1.plan.step"``). The one
    place this rule lives: the SQL tier partitions by it, hydration copies an agent's keys."""
    return key.split(".", 1)[0]


def check_prefix(prefix: object) -> str:
    """Validate a key prefix (any leading part of a valid key, possibly ending in ``.``)."""
    if type(prefix) is not str or len(prefix) > MAX_KEY_LENGTH:
        raise InvalidKey(f"invalid key prefix {prefix!r}", hint=_HINT)
    if _PREFIX.fullmatch(prefix) is None or prefix.startswith(".") or ".." in prefix:
        raise InvalidKey(f"invalid key prefix {prefix!r}", hint=_HINT)
    return prefix


def is_pattern(text: str) -> bool:
    """True if ``text`` holds a wildcard token."""
    return "*" in text or ">" in text


def check_pattern(pattern: object) -> str:
    """Validate a key pattern: a key whose tokens may be ``*``, with ``>`` allowed last."""
    if type(pattern) is not str or not pattern or len(pattern) > MAX_KEY_LENGTH:
        raise InvalidKey(f"invalid key pattern {pattern!r}", hint=_HINT)
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        if token == "*" or (token == ">" and i == len(tokens) - 1):
            continue
        if _KEY.fullmatch(token) is None:
            raise InvalidKey(
                f"invalid key pattern {pattern!r}: bad token {token!r}",
                hint="wildcards '*' and '>' must be whole tokens, '>' only last",
            )
    return pattern


def match(pattern: str, key: str) -> bool:
    """True if ``key`` matches ``pattern`` (NATS subject wildcard rules)."""
    if not is_pattern(pattern):
        return pattern == key
    ptoks = pattern.split(".")
    ktoks = key.split(".")
    for i, ptok in enumerate(ptoks):
        if ptok == ">":
            return len(ktoks) > i
        if i >= len(ktoks) or (ptok != "*" and ptok != ktoks[i]):
            return False
    return len(ktoks) == len(ptoks)


def quote_token(text: str) -> str:
    """Encode any string as one valid key token, reversibly.

    Characters outside ``A-Z a-z 0-9 - / _`` become ``=HH`` (UTF-8 bytes, upper-case hex); the
    empty string becomes ``=``. The result never contains ``.``, so it is exactly one token.
    Escaping can make it up to 12 times longer than ``text`` (4 UTF-8 bytes x 3 characters);
    keys built from it are still held to :data:`MAX_KEY_LENGTH`.
    """
    if text == "":
        return "="
    data = text.encode("utf-8", "surrogatepass")
    return "".join(chr(b) if b in _TOKEN_SAFE else f"={b:02X}" for b in data)


def unquote_token(token: str) -> str:
    """Invert :func:`quote_token`; raise :class:`InvalidKey` on text it cannot have produced."""
    if token == "=":
        return ""
    out = bytearray()
    i = 0
    try:
        while i < len(token):
            ch = token[i]
            if ch == "=":
                out.append(int(token[i + 1 : i + 3], 16))
                if len(token[i + 1 : i + 3]) != 2:
                    raise ValueError
                i += 3
            elif ord(ch) in _TOKEN_SAFE:
                out.append(ord(ch))
                i += 1
            else:
                raise ValueError
        return out.decode("utf-8", "surrogatepass")
    except (ValueError, UnicodeDecodeError):
        raise InvalidKey(
            f"{token!r} is not a quoted token", hint="pass only the output of quote_token()"
        ) from None
