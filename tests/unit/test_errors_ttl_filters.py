from __future__ import annotations

import datetime
import pickle
from typing import Any

import pytest

from msstore import errors
from msstore._internal.ttl import check_ttl, expiry
from msstore.spi import contains

ALL_ERRORS = [getattr(errors, name) for name in errors.__all__]


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_errors_pickle_with_fields(cls: type[errors.MsstoreError]) -> None:
    err = cls(
        "bucket AGENT_STATE refused the write",
        key="agent.a1",
        hint="retry later",
        expected=3,
        current=4,
    )
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls and str(back) == str(err)
    assert (back.key, back.hint, back.fields) == (
        "agent.a1",
        "retry later",
        {"expected": 3, "current": 4},
    )
    assert back.expected == 3  # type: ignore[attr-defined]
    assert isinstance(back, errors.MsstoreError)


def test_retryable_flags() -> None:
    retryable = {c.__name__ for c in ALL_ERRORS if c.retryable}
    assert retryable == {
        "VersionConflict",
        "ConnectionFailed",
        "DeadlineExceeded",
        "TransactionConflict",
    }


def test_message_says_what_to_do() -> None:
    err = errors.VersionConflict("k is at revision 4, not 3", hint="re-read the key and retry")
    assert str(err) == "k is at revision 4, not 3; re-read the key and retry"


def test_value_errors_are_value_errors() -> None:
    for cls in (errors.InvalidKey, errors.SerializationError, errors.InvalidArgument):
        assert issubclass(cls, ValueError)
    assert issubclass(errors.Unsupported, NotImplementedError)


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


def test_every_error_is_an_msstore_error_and_keeps_its_fields_across_pickling() -> None:
    for cls in ALL_ERRORS:
        assert issubclass(cls, errors.MsstoreError), cls
    stale = pickle.loads(pickle.dumps(errors.StaleVectors("gone", hashes=["h1", "h2"])))
    assert stale.fields == {"hashes": ["h1", "h2"]} and stale.hashes == ["h1", "h2"]
    batch = pickle.loads(pickle.dumps(errors.BatchError("2 failed", results=[1, "x"])))
    assert batch.results == [1, "x"]
    conflict = errors.TransactionConflict("deadlock (40P01)", sqlstate="40P01")
    assert conflict.retryable and not isinstance(conflict, errors.VersionConflict)
