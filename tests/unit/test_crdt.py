from __future__ import annotations

import pytest

from msstore.conflicts import (
    GCounter,
    ORSet,
    PNCounter,
    from_doc,
)
from msstore.errors import InvalidArgument, SerializationError


@pytest.mark.parametrize(
    "doc",
    [
        None,
        3,
        {"$crdt": "nope"},
        {"$crdt": "gcounter"},
        {"$crdt": "orset", "entries": [[1.5, []]], "context": {}},
    ],
)
def test_bad_crdt_documents(doc: object) -> None:
    with pytest.raises((SerializationError, InvalidArgument)):
        from_doc(doc)


def test_bad_crdt_operations() -> None:
    with pytest.raises(InvalidArgument):
        GCounter().increment("a", -1)
    with pytest.raises(InvalidArgument):
        GCounter().increment("", 1)
    with pytest.raises(InvalidArgument):
        ORSet().add("a", 1.5)  # only str and int: True == 1 == 1.0 in Python
    with pytest.raises(InvalidArgument):
        GCounter().merge(PNCounter())  # type: ignore[arg-type]


def test_each_type_reads_back_its_own_document_and_refuses_another() -> None:
    from msstore.conflicts import GCounter, PNCounter
    from msstore.errors import SerializationError

    counter = PNCounter().increment("a", 3).decrement("b")
    assert PNCounter.from_doc(counter.to_doc()) == counter
    assert PNCounter.from_doc(counter.to_doc()).value == 2
    with pytest.raises(SerializationError, match="not a GCounter document"):
        GCounter.from_doc(counter.to_doc())
    with pytest.raises(SerializationError):
        PNCounter.from_doc({"visits": 2})
