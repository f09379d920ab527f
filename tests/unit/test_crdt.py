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
