"""The conformance suite: one set of cases every backend of a protocol must pass.

Use it like dogpile's fixtures: subclass a suite and provide its factory fixture. The suite's
cases run against every parameter of that fixture, so ids name the backend::

    import pytest
    from msstore.testing.conformance import KeyValueConformance

    @pytest.fixture(params=["redis"])
    def kv_factory(request):
        def make(config):          # a BucketConfig with a unique name for this test
            return RedisKV(config)
        return make

    class TestRedisKV(KeyValueConformance):
        pass

A capability the store declares is exercised; one it does not declare must raise
``Unsupported``. Cases that wait for a TTL take about two seconds.
"""

from __future__ import annotations

from ._facts import FactStoreConformance
from ._kv import KeyValueConformance
from ._messages import MessageLogConformance
from ._outbox import EventSinkConformance, OutboxSourceConformance
from ._sagas import SagaLogConformance
from ._sessions import SessionStoreConformance
from ._storage import DataStorageConformance
from ._tasks import TaskQueueConformance
from ._values import BAD_KEYS, BAD_TTLS, BAD_VALUES, JSON_VALUES
from ._vector import VectorIndexConformance

__all__ = [
    "BAD_KEYS",
    "BAD_TTLS",
    "BAD_VALUES",
    "JSON_VALUES",
    "DataStorageConformance",
    "EventSinkConformance",
    "FactStoreConformance",
    "KeyValueConformance",
    "MessageLogConformance",
    "OutboxSourceConformance",
    "SagaLogConformance",
    "SessionStoreConformance",
    "TaskQueueConformance",
    "VectorIndexConformance",
]
