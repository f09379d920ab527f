from __future__ import annotations

from typing import Any

import pytest

from msstore import errors
from msstore.spi import contains

ALL_ERRORS = [getattr(errors, name) for name in errors.__all__]


@pytest.mark.parametrize(
    ("doc", "sub", "expected"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, True),
        ({"a": 1}, {"a": 2}, False),
        ({"a": 1}, {"b": 1}, False),
        ({"a": {"b": [1, 2, 3]}}, {"a": {"b": [3, 1]}}, True),
        ([1, 2, 3], [2, 2], True),
        ([1, 2], 1, True),
        ({"a": [1, 2]}, {"a": 1}, False),
        (1, 1.0, True),
        (True, 1, False),
        (None, None, True),
        ("1", 1, False),
        ([{"a": 1, "b": 2}], [{"a": 1}], True),
        ({}, {}, True),
        ([], [], True),
        ({"a": None}, {"a": None}, True),
        ({"a": 0}, {"a": None}, False),
    ],
)
def test_containment_follows_jsonb(doc: Any, sub: Any, expected: bool) -> None:
    assert contains(doc, sub) is expected
