from __future__ import annotations

import pickle

import pytest

from msstore import errors

ALL_ERRORS = [getattr(errors, name) for name in errors.__all__]


SAMPLES = {
    "expected": 3,
    "current": 4,
    "limit": 1.5,
    "failures": [],
    "capability": "cas",
    "results": [1, "x"],
    "failed": ["b.13"],
    "hashes": ["h1", "h2"],
    "task_id": "t-1",
    "attempt": 2,
    "status": "running",
    "cycle": ["a", "b", "a"],
}


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_errors_pickle_with_their_typed_fields(cls: type[errors.MsstoreError]) -> None:
    fields = {name: SAMPLES[name] for name in cls._field_names}
    err = cls(
        "bucket AGENT_STATE refused the write",
        key="agent.a1",
        hint="retry later",
        sqlstate="XX000",
        **fields,
    )
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls and str(back) == str(err)
    assert (back.key, back.hint, back.sqlstate, back.fields) == (
        "agent.a1",
        "retry later",
        "XX000",
        fields,
    )
    assert isinstance(back, errors.MsstoreError)


def test_an_unknown_field_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="no field colour"):
        errors.NotFound("x", colour="red")


def test_fields_are_typed_attributes_that_default_to_none() -> None:
    conflict = errors.VersionConflict("k moved", key="k", expected=3)
    assert (conflict.expected, conflict.current) == (3, None)
    stale = errors.StaleClaim("gone", task_id="t", attempt=1)
    assert (stale.task_id, stale.attempt) == ("t", 1)
    cycle = errors.DependencyCycle("loop", cycle=["a", "a"])
    assert cycle.cycle == ["a", "a"] and isinstance(cycle, errors.InvalidArgument)
    assert errors.DeadlineExceeded("slow", limit=2.0).limit == 2.0


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


def test_every_error_is_an_msstore_error_and_keeps_its_fields_across_pickling() -> None:
    for cls in ALL_ERRORS:
        assert issubclass(cls, errors.MsstoreError), cls
    stale = pickle.loads(pickle.dumps(errors.StaleVectors("gone", hashes=["h1", "h2"])))
    assert stale.fields == {"hashes": ["h1", "h2"]} and stale.hashes == ["h1", "h2"]
    batch = pickle.loads(pickle.dumps(errors.BatchError("2 failed", results=[1, 2])))
    assert batch.results == [1, 2]
    conflict = errors.TransactionConflict("deadlock (40P01)", sqlstate="40P01")
    assert conflict.retryable and not isinstance(conflict, errors.VersionConflict)
