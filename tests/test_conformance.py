"""Every backend through the shipped conformance suites (ids: memory; servers join later)."""

from msstore.testing.conformance import (
    DataStorageConformance,
    KeyValueConformance,
    MessageLogConformance,
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
