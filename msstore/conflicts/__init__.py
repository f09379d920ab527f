"""Conflict resolution: clocks, CRDTs, resolver strategies and ``update_with``.

>>> from msstore import open_kv
>>> from msstore.conflicts import CRDTMerge, PNCounter, update_with
>>> kv = open_kv("memory://counters")
>>> merge = CRDTMerge(PNCounter)
>>> update_with(kv, "visits", lambda c: c.increment("w1"), resolver=merge).value["$crdt"]
'pncounter'
"""

from msstore.conflicts.clocks import HLC, Stamp, VectorClock
from msstore.conflicts.crdt import (
    CRDT,
    GCounter,
    LWWMap,
    LWWRegister,
    MVRegister,
    ORSet,
    PNCounter,
    from_doc,
)
from msstore.conflicts.resolvers import (
    CRDTMerge,
    CustomMerge,
    LastWriteWins,
    Siblings,
    VectorClockResolver,
)
from msstore.conflicts.update import RetryPolicy, Updated, update_with

__all__ = [
    "CRDT",
    "HLC",
    "CRDTMerge",
    "CustomMerge",
    "GCounter",
    "LWWMap",
    "LWWRegister",
    "LastWriteWins",
    "MVRegister",
    "ORSet",
    "PNCounter",
    "RetryPolicy",
    "Siblings",
    "Stamp",
    "Updated",
    "VectorClock",
    "VectorClockResolver",
    "from_doc",
    "update_with",
]
