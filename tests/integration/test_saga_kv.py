"""KV steps on a real JetStream KV bucket (and on memory, for the same cases): compensation
by compare-and-set, a newer foreign write kept, a landed write recognised after a crash."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from msstore.backends.memory import MemoryKV, MemorySagaLog
from msstore.buckets import BucketConfig
from msstore.conflicts import RetryPolicy
from msstore.coordination import (
    FunctionStep,
    KvCreate,
    KvDelete,
    KvPut,
    KvUpdateWith,
    Saga,
    SagaRunner,
    SagaStatus,
    StepInput,
)
from msstore.protocols import KeyValueStore
from msstore.testing import FakeClock
from tests.unit.test_saga_model import Crash, CrashingKV


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
def bucket(request: pytest.FixtureRequest) -> Iterator[KeyValueStore]:
    config = BucketConfig(name=f"SAGA_{uuid.uuid4().hex[:8].upper()}", history=10)
    if request.param == "memory":
        yield MemoryKV(config)
        return
    from msstore.backends.nats import NatsKV

    store = NatsKV.open(request.getfixturevalue("nats_client"), config)
    yield store
    store.destroy()


def runner(clock: Callable[[], float], log: MemorySagaLog | None = None) -> SagaRunner:
    return SagaRunner(log or MemorySagaLog(), lease=10, policy=RetryPolicy(attempts=1), clock=clock)


def test_a_rollback_restores_every_key_and_keeps_a_foreign_write(bucket: KeyValueStore) -> None:
    bucket.put("owner", "agent-a")
    bucket.put("old", {"keep": True})
    bucket.put("count", 1)

    def meanwhile(_: StepInput) -> Mapping[str, Any]:
        bucket.put("count", 100)  # another agent, after the saga's update_with
        raise RuntimeError("agent-b refused")

    saga = Saga(
        "handoff",
        [
            KvPut(bucket, "owner", value="agent-b"),
            KvCreate(bucket, "inbox", value=[1]),
            KvDelete(bucket, "old"),
            KvUpdateWith(bucket, "count", fn=lambda v: v + 1),
            FunctionStep("accept", meanwhile),
        ],
    )
    result = runner(FakeClock()).run(saga)
    assert result.status is SagaStatus.ROLLED_BACK
    assert bucket.get("owner").value == "agent-a"  # type: ignore[union-attr]
    assert bucket.get("inbox") is None
    assert bucket.get("old").value == {"keep": True}  # type: ignore[union-attr]
    assert bucket.get("count").value == 100  # type: ignore[union-attr]
    (conflict,) = result.conflicts
    assert conflict["key"] == "count" and conflict["theirs"] > conflict["ours"]


def test_a_write_that_landed_before_the_crash_is_recognised(bucket: KeyValueStore) -> None:
    clock = FakeClock()
    log = MemorySagaLog()
    bucket.put("owner", "agent-a")
    saga = Saga("s", [KvPut(CrashingKV(bucket, at=1), "owner", value="agent-b")])
    with pytest.raises(Crash):
        runner(clock, log).run(saga)
    bucket.put("owner", "agent-c")  # a newer write after the crash
    clock.advance(11)
    resumer = SagaRunner(log, sagas=[saga], lease=10, policy=RetryPolicy(attempts=1), clock=clock)
    (result,) = resumer.recover()
    # No SQL step committed: compensated; the landed write is known, agent-c's kept.
    assert result.status is SagaStatus.ROLLED_BACK
    assert bucket.get("owner").value == "agent-c"  # type: ignore[union-attr]
    assert [c["key"] for c in result.conflicts] == ["owner"]
