"""The cases every saga log passes: its primitives, and the saga engine driven through it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from msstore.conflicts import RetryPolicy
from msstore.coordination import (
    FunctionStep,
    Phase,
    Saga,
    SagaLog,
    SagaRunner,
    SagaState,
    SagaStatus,
    SqlStep,
    StepInput,
    StepRecord,
    StepState,
)
from msstore.testing._clock import FakeClock

__all__ = ["SagaLogConformance"]

LogFactory = Callable[[], SagaLog]


def _state(now: float, *, key: str | None = None, owner: str = "p1") -> SagaState:
    return SagaState(
        saga_id=str(uuid.uuid4()),
        name="s",
        idempotency_key=key,
        status=SagaStatus.RUNNING,
        step=0,
        context={"a": [1, "x"]},
        owner=owner,
        lease_expires_at=now + 10,
        reason=None,
        created_at=now,
        updated_at=now,
    )


def _done(index: int = 0, detail: Mapping[str, Any] | None = None) -> StepRecord:
    return StepRecord(index, f"step{index}", Phase.ACTION, StepState.DONE, detail or {}, at=1.0)


class _Stop(BaseException):
    """The process stops here."""


class SagaLogConformance:
    """Cases for :class:`~msstore.coordination.SagaLog`. Needs fixture ``saga_log_factory``:
    ``make()`` returning an empty log (closed by the fixture's owner, if it needs closing)."""

    @pytest.fixture
    def log(self, saga_log_factory: LogFactory) -> SagaLog:
        """Fixture: a fresh log from ``saga_log_factory``."""
        return saga_log_factory()

    def test_a_started_saga_reads_back_and_a_repeated_key_returns_the_first(
        self, log: SagaLog
    ) -> None:
        first = log.start(_state(100.0, key="k1"))
        again = log.start(_state(200.0, key="k1", owner="p2"))
        assert again.saga_id == first.saga_id and again.owner == "p1"
        loaded = log.load(first.saga_id)
        assert loaded is not None
        state, records = loaded
        assert (state.context, state.status, state.step, records) == (
            {"a": [1, "x"]},
            SagaStatus.RUNNING,
            0,
            [],
        )
        assert state.lease_expires_at == pytest.approx(110.0)
        assert log.by_key("k1") == state and log.by_key("nope") is None
        assert log.load(str(uuid.uuid4())) is None

    def test_only_the_owner_writes_and_an_ended_saga_takes_nothing(self, log: SagaLog) -> None:
        state = log.start(_state(100.0))
        kw: dict[str, Any] = {"reason": None, "lease_expires_at": 120.0, "now": 101.0}
        assert not log.append(
            state.saga_id, "p2", [_done()], status=SagaStatus.RUNNING, step=1, **kw
        )
        assert log.append(
            state.saga_id, "p1", [_done(0, {"rev": 3})], status=SagaStatus.RUNNING, step=1, **kw
        )
        kw["lease_expires_at"] = None
        assert log.append(
            state.saga_id, "p1", [_done(-1)], status=SagaStatus.COMPLETED, step=1, **kw
        )
        kw["lease_expires_at"] = 130.0
        assert not log.append(
            state.saga_id, "p1", [_done(1)], status=SagaStatus.RUNNING, step=2, **kw
        )
        loaded = log.load(state.saga_id)
        assert loaded is not None
        ended, records = loaded
        assert (ended.status, ended.owner, ended.lease_expires_at) == (
            SagaStatus.COMPLETED,
            None,
            None,
        )
        assert [(r.index, r.detail) for r in records] == [(0, {"rev": 3}), (-1, {})]
        assert not log.take_over(state.saga_id, "p2", 200.0, 150.0)

    def test_a_lease_is_taken_over_only_once_it_ran_out(self, log: SagaLog) -> None:
        state = log.start(_state(100.0))
        assert not log.take_over(state.saga_id, "p2", 130.0, 105.0)
        assert log.take_over(state.saga_id, "p2", 130.0, 111.0)
        kw: dict[str, Any] = {"reason": None, "lease_expires_at": 140.0, "now": 112.0}
        assert not log.append(
            state.saga_id, "p1", [_done()], status=SagaStatus.RUNNING, step=1, **kw
        )
        assert log.append(state.saga_id, "p2", [_done()], status=SagaStatus.RUNNING, step=1, **kw)

    def test_a_saga_waiting_for_a_person_is_reopened_by_whoever_takes_it_over(
        self, log: SagaLog
    ) -> None:
        state = log.start(_state(100.0))
        failed = StepRecord(0, "step0", Phase.COMPENSATION, StepState.FAILED, error="down")
        assert log.append(
            state.saga_id,
            "p1",
            [failed],
            status=SagaStatus.COMPENSATION_FAILED,
            step=0,
            reason="why",
            lease_expires_at=None,
            now=101.0,
        )
        assert log.take_over(state.saga_id, "p2", 130.0, 102.0)
        loaded = log.load(state.saga_id)
        assert loaded is not None
        assert (loaded[0].status, loaded[0].owner, loaded[0].reason) == (
            SagaStatus.COMPENSATING,
            "p2",
            "why",
        )

    def test_an_atomic_step_records_its_outcome_only_with_its_work(self, log: SagaLog) -> None:
        state = log.start(_state(100.0))
        kw: dict[str, Any] = {
            "status": SagaStatus.RUNNING,
            "step": 1,
            "reason": None,
            "lease_expires_at": 120.0,
            "now": 101.0,
            "isolation": "SERIALIZABLE",
        }
        ran: list[int] = []

        def fails(conn: Any) -> None:
            ran.append(1)
            raise RuntimeError("refused")

        with pytest.raises(Exception, match="refused"):
            log.atomic(state.saga_id, "p1", [_done()], fails, **kw)
        assert log.atomic(state.saga_id, "p2", [_done()], lambda c: ran.append(2), **kw) == (
            False,
            None,
        )
        assert log.atomic(state.saga_id, "p1", [_done(0, {"row": 1})], lambda c: "ok", **kw) == (
            True,
            "ok",
        )
        loaded = log.load(state.saga_id)
        assert loaded is not None
        assert ran == [1] and [r.detail for r in loaded[1]] == [{"row": 1}]
        assert loaded[0].step == 1

    def test_records_of_one_write_keep_their_order_and_go_in_with_the_start(
        self, log: SagaLog
    ) -> None:
        intents = [
            StepRecord(i, f"step{i}", Phase.ACTION, StepState.STARTED, {"i": i}, at=100.0)
            for i in (0, 1)
        ]
        state = log.start(_state(100.0), intents)
        outcomes = [_done(1, {"rev": 2}), _done(0, {"rev": 1}), _done(-1)]
        assert log.append(
            state.saga_id,
            "p1",
            outcomes,
            status=SagaStatus.COMPLETED,
            step=2,
            reason=None,
            lease_expires_at=None,
            now=101.0,
        )
        assert not log.append(
            state.saga_id,
            "p1",
            [_done(5)],
            status=SagaStatus.RUNNING,
            step=2,
            reason=None,
            lease_expires_at=130.0,
            now=102.0,
        )
        loaded = log.load(state.saga_id)
        assert loaded is not None
        assert [(r.index, r.state, dict(r.detail)) for r in loaded[1]] == [
            (0, StepState.STARTED, {"i": 0}),
            (1, StepState.STARTED, {"i": 1}),
            (1, StepState.DONE, {"rev": 2}),
            (0, StepState.DONE, {"rev": 1}),
            (-1, StepState.DONE, {}),
        ]

    def test_an_atomic_step_may_end_the_saga_and_logs_what_its_function_filled_in(
        self, log: SagaLog
    ) -> None:
        state = log.start(_state(100.0))
        out: dict[str, Any] = {}
        filled = StepRecord(1, "step1", Phase.ACTION, StepState.DONE, out, at=1.0)
        records = [_done(0, {"kv": 7}), filled, _done(-1)]
        ok, _ = log.atomic(
            state.saga_id,
            "p1",
            records,
            lambda c: out.update(row=42),
            status=SagaStatus.COMPLETED,
            step=2,
            reason=None,
            lease_expires_at=None,
            now=101.0,
            isolation="READ COMMITTED",
            timeout=5.0,
        )
        loaded = log.load(state.saga_id)
        assert ok and loaded is not None
        assert (loaded[0].status, loaded[0].owner) == (SagaStatus.COMPLETED, None)
        assert [dict(r.detail) for r in loaded[1]] == [{"kv": 7}, {"row": 42}, {}]

    def test_sagas_are_listed_by_status_oldest_first(self, log: SagaLog) -> None:
        a, b, c = (log.start(_state(t)) for t in (100.0, 101.0, 102.0))
        log.append(
            b.saga_id,
            "p1",
            [_done(-1)],
            status=SagaStatus.COMPLETED,
            step=0,
            reason=None,
            lease_expires_at=None,
            now=103.0,
        )
        assert [s.saga_id for s in log.sagas()] == [a.saga_id, b.saga_id, c.saga_id]
        running = log.sagas([SagaStatus.RUNNING, SagaStatus.COMPENSATING])
        assert [s.saga_id for s in running] == [a.saga_id, c.saga_id]
        assert [s.saga_id for s in log.sagas(limit=1)] == [a.saga_id]

    # The engine over this log ----------------------------------------------------------------

    def test_a_saga_that_fails_after_its_sql_step_compensates_it(self, log: SagaLog) -> None:
        clock = FakeClock()
        effects: list[str] = []

        def refuse(_: StepInput) -> Mapping[str, Any]:
            raise RuntimeError("no room")

        saga = Saga(
            "book",
            [
                FunctionStep("hold", lambda g: {"held": 1}, lambda d: effects.append("unhold")),
                SqlStep(
                    "row",
                    lambda conn: {"row": 7},
                    lambda conn, d: effects.append(f"unrow {d['row']}"),
                ),
                FunctionStep("pay", refuse),
            ],
        )
        runner = SagaRunner(log, lease=10, policy=RetryPolicy(attempts=1), clock=clock)
        result = runner.run(saga, {"who": "w"}, key="b-1")
        assert result.status is SagaStatus.ROLLED_BACK and "no room" in (result.reason or "")
        assert effects == ["unrow 7", "unhold"]
        assert runner.run(saga, key="b-1") == result and effects == ["unrow 7", "unhold"]

    def test_a_stopped_saga_past_its_sql_step_is_finished_by_another_process(
        self, log: SagaLog
    ) -> None:
        clock = FakeClock()
        runs: dict[str, int] = {}

        def step(name: str, stop: bool = False) -> Callable[[StepInput], Mapping[str, Any]]:
            def act(_: StepInput) -> Mapping[str, Any]:
                runs[name] = runs.get(name, 0) + 1
                if stop and runs[name] == 1:
                    raise _Stop
                return {}

            return act

        saga = Saga(
            "s",
            [
                FunctionStep("a", step("a")),
                SqlStep("sql", lambda conn: {}),
                FunctionStep("b", step("b", stop=True)),
            ],
        )
        with pytest.raises(_Stop):
            SagaRunner(log, lease=10, clock=clock).run(saga)
        assert SagaRunner(log, sagas=[saga], lease=10, clock=clock).recover() == []  # held
        clock.advance(11)
        (result,) = SagaRunner(log, sagas=[saga], lease=10, clock=clock).recover()
        assert result.status is SagaStatus.COMPLETED
        assert runs == {"a": 1, "b": 2}  # "b" never recorded an outcome: it runs again
