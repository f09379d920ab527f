from __future__ import annotations

import datetime
from typing import Any

import pytest

from msstore import errors
from msstore._internal.ttl import check_ttl, expiry

ALL_ERRORS = [getattr(errors, name) for name in errors.__all__]


@pytest.mark.parametrize(
    ("ttl", "seconds"),
    [
        (None, None),
        (1, 1),
        (1.0, 1),
        (1.2, 2),
        (59.9, 60),
        (datetime.timedelta(minutes=30), 1800),
        (datetime.timedelta(seconds=1, microseconds=1), 2),
    ],
)
def test_ttl_rounds_up_to_whole_seconds(ttl: Any, seconds: int | None) -> None:
    assert check_ttl(ttl) == seconds


@pytest.mark.parametrize(
    "ttl",
    [
        0,
        -5,
        0.5,
        float("nan"),
        float("inf"),
        True,
        "5",
        10**12,
        datetime.timedelta(milliseconds=500),
    ],
)
def test_bad_ttls(ttl: Any) -> None:
    with pytest.raises(errors.InvalidArgument):
        check_ttl(ttl)


def test_key_ttl_wins_over_bucket_ttl() -> None:
    assert expiry(100.0, 5, 60) == 105.0
    assert expiry(100.0, None, 60) == 160.0
    assert expiry(100.0, None, None) is None
