"""Every backend through the shipped conformance suites (ids: memory; servers join later)."""

from msstore.testing.conformance import (
    DataStorageConformance,
    EventSinkConformance,
    FactStoreConformance,
    KeyValueConformance,
    MessageLogConformance,
    OutboxSourceConformance,
    SagaLogConformance,
    SessionStoreConformance,
    TaskQueueConformance,
    VectorIndexConformance,
)


class TestKeyValue(KeyValueConformance):
    pass


class TestDataStorage(DataStorageConformance):
    pass


class TestVectorIndex(VectorIndexConformance):
    pass


class TestTaskQueue(TaskQueueConformance):
    pass


class TestMessageLog(MessageLogConformance):
    pass


class TestSessionStore(SessionStoreConformance):
    pass


class TestFactStore(FactStoreConformance):
    pass


class TestOutboxSource(OutboxSourceConformance):
    pass


class TestEventSink(EventSinkConformance):
    pass


class TestSagaLog(SagaLogConformance):
    pass
