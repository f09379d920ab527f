from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msstore import keys
from msstore.errors import InvalidKey
from msstore.testing.conformance import BAD_KEYS


@pytest.mark.parametrize("key", ["a", "agent.a1.state", "A-Z_a/z=0.9", "x" * 1024, "a.b.c.d"])
def test_valid_keys(key: str) -> None:
    assert keys.check_key(key) == key


@pytest.mark.parametrize("key", BAD_KEYS, ids=lambda k: repr(k)[:20])
def test_invalid_keys(key: object) -> None:
    with pytest.raises(InvalidKey) as info:
        keys.check_key(key)
    assert "quote_token" in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b.x.c", False),
        ("a.>", "a.b", True),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("*", "a", True),
        ("*", "a.b", False),
        (">", "a.b", True),
        ("a.b", "a.b", True),
        ("a.b", "a.bc", False),
        ("*.b", "a.b", True),
    ],
)
def test_wildcard_matching(pattern: str, key: str, expected: bool) -> None:
    assert keys.match(pattern, key) is expected


@pytest.mark.parametrize("pattern", ["a.>.b", "a*", "", "a..b", ">a", "a.b.", "ü"])
def test_invalid_patterns(pattern: str) -> None:
    with pytest.raises(InvalidKey):
        keys.check_pattern(pattern)


@given(st.text())
def test_quote_token_is_reversible_and_valid(text: str) -> None:
    token = keys.quote_token(text)
    assert "." not in token
    assert keys.unquote_token(token) == text
    if len(token) <= keys.MAX_KEY_LENGTH:
        keys.check_key(token)
    else:  # escaping can triple a text's length: the length limit still applies
        with pytest.raises(InvalidKey, match="over the 1024 limit"):
            keys.check_key(token)


@pytest.mark.parametrize("text", ["", " ", "*", ">", "a.b", "ünïcödé", "=", "a b*c>d"])
def test_quote_examples(text: str) -> None:
    assert keys.unquote_token(keys.quote_token(text)) == text


@pytest.mark.parametrize("token", ["=4", "=ZZ", "a b", "=FF", "a.b"])
def test_unquote_rejects_foreign_text(token: str) -> None:
    with pytest.raises(InvalidKey):
        keys.unquote_token(token)
