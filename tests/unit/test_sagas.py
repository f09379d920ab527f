"""Sagas on memory backends: forward, compensation, conflicts, idempotency, crashes and
recovery (the rules in msstore.coordination._sagas, driven directly)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
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
    SqlStep,
    StepInput,
    Strategy,
)
from msstore.errors import (
    BatchError,
    DuplicateKey,
    InvalidArgument,
    MsstoreError,
    OutcomeUnknown,
    Unsupported,
)
from msstore.testing import FakeClock
from tests.unit.test_saga_model import Crash, CrashingKV

ONCE = RetryPolicy(attempts=1)


def make_kv(clock: FakeClock) -> MemoryKV:
    return MemoryKV(BucketConfig(name="s", history=10), clock=clock)


def runner(log: MemorySagaLog, clock: FakeClock, *sagas: Saga) -> SagaRunner:
    return SagaRunner(log, sagas=sagas, lease=10, policy=ONCE, clock=clock)


def record(into: list[Any], item: Any, out: Mapping[str, Any]) -> Mapping[str, Any]:
    into.append(item)
    return out


def boom(_: StepInput) -> Mapping[str, Any]:
    raise RuntimeError("the SQL row was refused")


def test_a_saga_runs_its_steps_in_order_and_passes_their_details_on() -> None:
    clock = FakeClock()
    kv, log = make_kv(clock), MemorySagaLog()
    kv.put("a", 1)
    seen: list[Mapping[str, Any]] = []
    saga = Saga(
        "handoff",
        [
            KvPut(kv, "a", value=2),
            KvCreate(kv, "b", value={"x": 1}),
            FunctionStep("note", lambda given: record(seen, dict(given.results), {"n": 1})),
        ],
    )
    result = runner(log, clock).run(saga, {"agent": "w"})
    assert result.status is SagaStatus.COMPLETED
    assert (kv.get("a").value, kv.get("b").value) == (2, {"x": 1})  # type: ignore[union-attr]
    assert seen[0]["put a"]["found"] == 1 and seen[0]["create b"]["existed"] is False


def test_a_failed_step_compensates_the_done_ones_in_reverse_and_restores_every_key() -> None:
    clock = FakeClock()
    kv, log = make_kv(clock), MemorySagaLog()
    kv.put("a", "old")
    kv.put("gone", "keep me")
    order: list[str] = []
    saga = Saga(
        "s",
        [
            KvPut(kv, "a", value="new"),
            KvCreate(kv, "b", value=1),
            KvDelete(kv, "gone"),
            KvUpdateWith(kv, "n", fn=lambda v: (v or 0) + 1),
            FunctionStep("f", lambda g: {}, lambda d: order.append("f")),
            FunctionStep("sql", boom),
        ],
    )
    result = runner(log, clock).run(saga)
    assert result.status is SagaStatus.ROLLED_BACK
    assert "the SQL row was refused" in (result.reason or "")
    assert kv.get("a").value == "old"  # type: ignore[union-attr]
    assert kv.get("b") is None and kv.get("n") is None
    assert kv.get("gone").value == "keep me"  # type: ignore[union-attr]
    assert order == ["f"] and result.conflicts == ()
    _state, records = log.load(result.saga_id)  # type: ignore[misc]
    undone = [r.name for r in records if r.phase.value == "compensation" and r.index >= 0]
    assert undone == ["f", "update_with n", "delete gone", "create b", "put a"]


def test_a_compensation_keeps_a_newer_write_and_reports_both_revisions() -> None:
    clock = FakeClock()
    kv, log = make_kv(clock), MemorySagaLog()
    kv.put("a", "old")

    def someone_writes(_: StepInput) -> Mapping[str, Any]:
        kv.put("a", "theirs")
        raise RuntimeError("late failure")

    saga = Saga("s", [KvPut(kv, "a", value="ours"), FunctionStep("x", someone_writes)])
    result = runner(log, clock).run(saga)
    assert result.status is SagaStatus.ROLLED_BACK
    assert kv.get("a").value == "theirs"  # type: ignore[union-attr]
    (conflict,) = result.conflicts
    assert conflict["key"] == "a" and conflict["theirs"] == conflict["ours"] + 1


def test_an_idempotency_key_runs_a_saga_once() -> None:
    clock = FakeClock()
    log = MemorySagaLog()
    runs: list[int] = []
    saga = Saga("s", [FunctionStep("f", lambda g: record(runs, 1, {}))])
    first = runner(log, clock).run(saga, key="order-7")
    second = runner(log, clock).run(saga, key="order-7")
    assert first == second and first.status is SagaStatus.COMPLETED and runs == [1]


def test_a_failed_compensation_ends_the_saga_for_a_person_with_what_is_left() -> None:
    clock = FakeClock()
    log = MemorySagaLog()

    def stuck(_: Mapping[str, Any]) -> None:
        raise RuntimeError("compensation refused")

    saga = Saga(
        "s",
        [
            FunctionStep("one", lambda g: {}, lambda d: None),
            FunctionStep("two", lambda g: {}, stuck),
            FunctionStep("three", boom),
        ],
    )
    result = runner(log, clock).run(saga)
    assert result.status is SagaStatus.COMPENSATION_FAILED
    assert result.steps_left == ("two", "one")
    assert any("compensation refused" in e for e in result.errors)


@pytest.mark.parametrize("sql_done", [False, True])
def test_a_saga_whose_process_died_after_a_write_is_resumed_by_another(sql_done: bool) -> None:
    clock = FakeClock()
    kv, log = make_kv(clock), MemorySagaLog()
    kv.put("a", "old")
    writes = CrashingKV(kv, at=2)
    sql_runs: list[int] = []
    steps: list[Any] = [KvPut(writes, "a", value="new")]
    if sql_done:
        steps.append(SqlStep("sql", lambda conn: record(sql_runs, 1, {"row": 1})))
    steps += [KvCreate(writes, "b", value=1), KvPut(kv, "c", value=3)]
    saga = Saga("s", steps)
    with pytest.raises(Crash):  # killed just after "b" landed, before its outcome was logged
        runner(log, clock).run(saga)
    assert kv.get("b") is not None
    clock.advance(11)  # the lease runs out
    (result,) = runner(log, clock, saga).recover()
    if sql_done:  # forward: "b" is recognised as landed, only "c" runs
        assert result.status is SagaStatus.COMPLETED
        assert [kv.get(k).value for k in "abc"] == ["new", 1, 3]  # type: ignore[union-attr]
        assert sql_runs == [1]
    else:  # no SQL committed: compensated, "b" included
        assert result.status is SagaStatus.ROLLED_BACK
        assert kv.get("a").value == "old" and kv.get("b") is None  # type: ignore[union-attr]
        assert kv.get("c") is None


def test_a_live_lease_is_not_taken_over() -> None:
    clock = FakeClock()
    log = MemorySagaLog()
    saga = Saga("s", [FunctionStep("f", lambda g: (_ for _ in ()).throw(Crash()))])
    with pytest.raises(Crash):
        runner(log, clock).run(saga)
    assert runner(log, clock, saga).recover() == []
    clock.advance(11)
    (result,) = runner(log, clock, saga).recover()
    assert result.status is SagaStatus.ROLLED_BACK


def test_two_phase_commit_is_refused_with_the_reason_and_bad_definitions_too() -> None:
    with pytest.raises(Unsupported, match="prepare phase"):
        SagaRunner.check_strategy(Strategy.TWO_PHASE_COMMIT)
    assert SagaRunner.check_strategy(Strategy.EVENTUAL) == "eventual"
    with pytest.raises(InvalidArgument, match="strategy"):
        SagaRunner.check_strategy("xa")
    with pytest.raises(InvalidArgument, match="unique"):
        Saga("s", [FunctionStep("f", lambda g: {}), FunctionStep("f", lambda g: {})])
    with pytest.raises(InvalidArgument, match="no steps"):
        Saga("s", [])
    with pytest.raises(InvalidArgument, match="isolation"):
        SqlStep("q", lambda c: {}, isolation="DIRTY")
    with pytest.raises(InvalidArgument, match="lease"):
        SagaRunner(MemorySagaLog(), lease=0)


class Flaky:
    """A bucket whose next ``put`` (or ``put_many`` key) ends without an answer: written or
    not (``lands``), the caller gets ``OutcomeUnknown``; ``refuse``: keys a batch refuses."""

    def __init__(self, kv: MemoryKV, *, lands: bool, refuse: tuple[str, ...] = ()) -> None:
        self.kv, self.lands, self.refuse, self.armed = kv, lands, refuse, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)

    def put(self, key: str, value: Any, *, ttl: float | None = None) -> int:
        if not self.armed:
            return self.kv.put(key, value, ttl=ttl)
        self.armed = False
        if self.lands:
            self.kv.put(key, value, ttl=ttl)
        raise OutcomeUnknown(f"put {key!r}: no answer", key=key, limit=1.0)

    def put_many(
        self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], *, ttl: float | None = None
    ) -> list[int]:
        results: list[int | MsstoreError] = []
        failed: list[str] = []
        for key, value in items.items() if isinstance(items, Mapping) else items:
            if key in self.refuse:
                results.append(DuplicateKey(f"{key!r} refused", key=key))
                failed.append(key)
            else:
                results.append(self.kv.put(key, value, ttl=ttl))
        if failed:
            raise BatchError("some failed", results=results, failed=failed)
        return [r for r in results if isinstance(r, int)]


@pytest.mark.parametrize("lands", [True, False])
def test_a_put_without_an_answer_is_looked_for_before_it_counts(lands: bool) -> None:
    clock = FakeClock()
    kv, log = make_kv(clock), MemorySagaLog()
    flaky = Flaky(kv, lands=lands)
    saga = Saga("s", [KvPut(flaky, "k", value="ours"), FunctionStep("f", lambda g: {})])
    result = runner(log, clock).run(saga)
    entry = kv.get("k")
    if lands:  # found in the key's history: done, the saga goes on
        assert result.status is SagaStatus.COMPLETED and entry is not None
        assert entry.value == "ours"
    else:  # not there: the step failed, and its compensation finds nothing to undo
        assert result.status is SagaStatus.ROLLED_BACK and "OutcomeUnknown" in (result.reason or "")
        assert entry is None and kv.history("k") == []


def test_a_batch_with_one_refused_put_compensates_the_put_that_landed() -> None:
    clock = FakeClock()
    kv, log = make_kv(clock), MemorySagaLog()
    kv.put("a", "before")
    flaky = Flaky(kv, lands=True, refuse=("b",))
    flaky.armed = False
    saga = Saga("s", [KvPut(flaky, "a", value="ours"), KvPut(flaky, "b", value=1)])
    result = runner(log, clock).run(saga)
    assert result.status is SagaStatus.ROLLED_BACK and "refused" in (result.reason or "")
    entry = kv.get("a")
    assert entry is not None and entry.value == "before" and kv.get("b") is None
    loaded = log.load(result.saga_id)
    assert loaded is not None
    assert [(r.name, r.phase.value, r.state.value) for r in loaded[1] if r.index >= 0] == [
        ("put a", "action", "started"),
        ("put b", "action", "started"),
        ("put a", "action", "done"),
        ("put b", "action", "failed"),
        ("put a", "compensation", "done"),
    ]


def test_a_function_step_past_its_timeout_fails_and_is_compensated_too() -> None:
    clock = FakeClock()
    log = MemorySagaLog()
    release, finished = threading.Event(), threading.Event()
    undone: list[Mapping[str, Any]] = []

    def slow(_: StepInput) -> Mapping[str, Any]:
        release.wait(60)
        finished.set()
        return {}

    saga = Saga("s", [FunctionStep("slow", slow, undone.append, timeout=0.05)])
    result = runner(log, clock).run(saga)
    release.set()
    assert finished.wait(60)
    assert result.status is SagaStatus.ROLLED_BACK and "0.05 s timeout" in (result.reason or "")
    assert undone == [{"outcome_unknown": True}]  # (it may still have done its work)


@pytest.mark.parametrize("bad", [0, -1, 86401, True, "1"])
def test_a_step_timeout_out_of_range_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidArgument, match="timeout"):
        FunctionStep("f", lambda g: {}, timeout=bad)
    with pytest.raises(InvalidArgument, match="timeout"):
        SqlStep("s", lambda conn: {}, timeout=bad)
