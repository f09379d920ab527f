"""Sagas: a named sequence of steps run forward, compensated in reverse on failure, and resumed
by another process after a crash, every transition recorded in a :class:`SagaLog` first.

The rules, once, for every log:

* a step's intent is logged before it runs and its outcome after, each outcome committed before
  the next step starts; a :class:`SqlStep`'s outcome commits in the step's own transaction;
* a step that fails (after its retries) turns the saga to compensating: the steps done so far
  are compensated in reverse order; a compensation that fails after its retries ends the saga in
  ``COMPENSATION_FAILED`` with what is left, for a person;
* a saga whose process stopped (its lease ran out) is taken over by :meth:`SagaRunner.recover`:
  an action interrupted between intent and outcome is checked (``Step.landed``); then the saga
  goes forward if one of its SQL steps committed, otherwise it is compensated. A step with a
  recorded outcome never runs again;
* an idempotency key runs a saga once: starting it again returns the first run's result.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from msstore.codec import default_codec
from msstore.conflicts.update import RetryPolicy
from msstore.errors import InvalidArgument, NotFound, StaleClaim, Unsupported

from ._saga_log import Phase, SagaLog, SagaState, SagaStatus, StepRecord, StepState
from ._saga_steps import Compensated, SqlStep, Step, StepInput

__all__ = ["Saga", "SagaResult", "SagaRunner", "Strategy"]

log = logging.getLogger("msstore.coordination.sagas")

AnyStep = Step | SqlStep


class Strategy:
    """How a change across KV and SQL is coordinated (:meth:`SagaRunner.check_strategy`)."""

    SAGA = "saga"
    EVENTUAL = "eventual"
    TWO_PHASE_COMMIT = "two_phase_commit"


def _steps(steps: Iterable[AnyStep]) -> tuple[AnyStep, ...]:
    return tuple(steps)


@attrs.frozen
class Saga:
    """A named sequence of steps (each a :class:`~msstore.coordination.Step` or
    :class:`~msstore.coordination.SqlStep`), names unique."""

    name: str
    steps: tuple[AnyStep, ...] = attrs.field(converter=_steps)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidArgument(f"a saga's name must be a non-empty str, got {self.name!r}")
        if not self.steps:
            raise InvalidArgument(f"saga {self.name!r} has no steps")
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise InvalidArgument(f"saga {self.name!r}: step names must be unique, got {names}")


@attrs.frozen
class SagaResult:
    """How a saga ended (or where it is, if another process holds it): ``status``; ``reason``
    for a rollback; ``steps_left``: steps still to compensate, for a person; ``errors``; and
    ``conflicts``: KV compensations that found a newer write by someone else and kept it
    (key, our revision, theirs)."""

    saga_id: str
    status: SagaStatus
    reason: str | None = None
    steps_left: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    conflicts: tuple[Mapping[str, Any], ...] = ()


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _LeaseLost(Exception):
    pass


class SagaRunner:
    """Runs sagas over a :class:`SagaLog`: ``run`` a saga, ``recover`` the sagas whose process
    stopped, ``compensate`` one by hand. ``sagas``: the definitions ``recover`` may meet, by
    name; ``lease``: seconds a run holds a saga without writing to its log; ``policy``: the
    retries of each step half; ``clock``: Unix seconds (a ``FakeClock`` in tests)."""

    def __init__(
        self,
        log: SagaLog,
        *,
        sagas: Iterable[Saga] = (),
        lease: float = 30.0,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
    ) -> None:
        if not isinstance(lease, int | float) or isinstance(lease, bool) or not 0 < lease <= 86400:
            raise InvalidArgument(f"lease must be seconds in (0, 86400], got {lease!r}")
        self.log = log
        self.definitions = {s.name: s for s in sagas}
        self.lease = float(lease)
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self.owner = owner or _owner()

    @staticmethod
    def check_strategy(strategy: str) -> str:
        """Accept ``Strategy.SAGA`` or ``Strategy.EVENTUAL``; refuse two-phase commit."""
        if strategy == Strategy.TWO_PHASE_COMMIT:
            raise Unsupported(
                "two-phase commit is not supported: JetStream KV has no prepare phase (a write "
                "is visible once acknowledged and cannot be held pending a vote), so it cannot "
                "take part in one",
                hint="use Strategy.SAGA (compensated steps) or Strategy.EVENTUAL (write SQL, "
                "let the outbox relay carry the change)",
            )
        if strategy not in (Strategy.SAGA, Strategy.EVENTUAL):
            raise InvalidArgument(
                f"strategy must be 'saga', 'eventual' or 'two_phase_commit', got {strategy!r}"
            )
        return strategy

    # Running -------------------------------------------------------------------------------

    def run(
        self, saga: Saga, context: Mapping[str, Any] | None = None, *, key: str | None = None
    ) -> SagaResult:
        """Run ``saga`` with ``context`` (JSON) to its end and return how it ended. ``key``:
        an idempotency key; a saga already started with it is not run again, its result is
        returned (its current status if another process is still running it)."""
        if key is not None and (not isinstance(key, str) or not key or len(key) > 255):
            raise InvalidArgument(
                f"key must be a non-empty str of at most 255 characters, got {key!r}"
            )
        context = dict(context or {})
        default_codec.encode_canonical(context)  # refuse what cannot be logged, nothing written
        self.definitions.setdefault(saga.name, saga)
        now = self.clock()
        state = SagaState(
            saga_id=str(uuid.uuid4()),
            name=saga.name,
            idempotency_key=key,
            status=SagaStatus.RUNNING,
            step=0,
            context=context,
            owner=self.owner,
            lease_expires_at=now + self.lease,
            reason=None,
            created_at=now,
            updated_at=now,
        )
        started = self.log.start(state)
        if started.saga_id != state.saga_id:
            return self.result(started.saga_id)
        return self._drive(saga, started.saga_id)

    def recover(self) -> list[SagaResult]:
        """Take over every saga whose lease ran out and drive it to its end."""
        results = []
        now = self.clock()
        for state in self.log.sagas([SagaStatus.RUNNING, SagaStatus.COMPENSATING], limit=1000):
            if state.lease_expires_at is not None and state.lease_expires_at > now:
                continue
            saga = self.definitions.get(state.name)
            if saga is None:
                log.warning(
                    "saga %s: no definition named %r to resume it", state.saga_id, state.name
                )
                continue
            if self.log.take_over(state.saga_id, self.owner, now + self.lease, now):
                results.append(self._drive(saga, state.saga_id, resumed=True))
        return results

    def compensate(self, saga_id: str) -> SagaResult:
        """Compensate a saga that is not held by a live process, whatever its status (an
        operator's call for a saga that needs a person)."""
        state = self._load(saga_id)[0]
        saga = self.definitions.get(state.name)
        if saga is None:
            raise NotFound(f"saga {saga_id}: no definition named {state.name!r}", key=saga_id)
        now = self.clock()
        if state.status is SagaStatus.COMPLETED or state.status is SagaStatus.ROLLED_BACK:
            return self.result(saga_id)
        if not self.log.take_over(saga_id, self.owner, now + self.lease, now):
            raise StaleClaim(
                f"saga {saga_id} is held by {state.owner} until its lease runs out", key=saga_id
            )
        try:
            return self._backward(saga, saga_id, state.reason or "compensated by an operator")
        except _LeaseLost:
            log.warning("saga %s: lease lost to another process; leaving it to that one", saga_id)
            return self.result(saga_id)

    def result(self, saga_id: str) -> SagaResult:
        """What the log says of the saga now."""
        state, records = self._load(saga_id)
        left: tuple[str, ...] = ()
        if state.status is SagaStatus.COMPENSATION_FAILED:
            names = {r.index: r.name for r in records}
            left = tuple(names[i] for i in reversed(_to_compensate(records)))
        errors = tuple(r.error for r in records if r.state is StepState.FAILED and r.error)
        conflicts = tuple(r.detail for r in records if r.state is StepState.CONFLICT)
        return SagaResult(saga_id, state.status, state.reason, left, errors, conflicts)

    # The engine ----------------------------------------------------------------------------

    def _load(self, saga_id: str) -> tuple[SagaState, Sequence[StepRecord]]:
        loaded = self.log.load(saga_id)
        if loaded is None:
            raise NotFound(f"no saga {saga_id}", key=saga_id)
        return loaded

    def _append(
        self,
        saga_id: str,
        record: StepRecord,
        *,
        status: SagaStatus,
        step: int,
        reason: str | None = None,
    ) -> None:
        now = self.clock()
        lease = None if status.ended else now + self.lease
        record = attrs.evolve(record, at=now)
        if not self.log.append(
            saga_id,
            self.owner,
            record,
            status=status,
            step=step,
            reason=reason,
            lease_expires_at=lease,
            now=now,
        ):
            raise _LeaseLost(saga_id)

    def _drive(self, saga: Saga, saga_id: str, *, resumed: bool = False) -> SagaResult:
        try:
            state, records = self._load(saga_id)
            if state.status is SagaStatus.COMPENSATING:
                return self._backward(saga, saga_id, state.reason or "compensating")
            if resumed:
                records = self._settle_interrupted(saga, saga_id, state, records)
                sql_done = any(
                    isinstance(saga.steps[r.index], SqlStep) and r.state is StepState.DONE
                    for r in records
                    if r.phase is Phase.ACTION and r.index >= 0
                )
                if not sql_done:
                    return self._backward(
                        saga, saga_id, "its process stopped before the SQL step committed"
                    )
            return self._forward(saga, saga_id)
        except _LeaseLost:
            log.warning("saga %s: lease lost to another process; leaving it to that one", saga_id)
            return self.result(saga_id)

    def _settle_interrupted(
        self, saga: Saga, saga_id: str, state: SagaState, records: Sequence[StepRecord]
    ) -> Sequence[StepRecord]:
        """Record the outcome of an action whose intent is the last thing logged."""
        last = records[-1] if records else None
        if last is None or last.phase is not Phase.ACTION or last.state is not StepState.STARTED:
            return records
        step = saga.steps[last.index]
        detail = None if isinstance(step, SqlStep) else step.landed(last.detail)
        if detail is None:
            self._append(
                saga_id,
                attrs.evolve(last, state=StepState.FAILED, error="interrupted: did not land"),
                status=SagaStatus.RUNNING,
                step=last.index,
            )
        else:
            self._append(
                saga_id,
                attrs.evolve(last, state=StepState.DONE, detail=detail),
                status=SagaStatus.RUNNING,
                step=last.index + 1,
            )
        return self._load(saga_id)[1]

    def _forward(self, saga: Saga, saga_id: str) -> SagaResult:
        state, records = self._load(saga_id)
        results = {
            saga.steps[r.index].name: r.detail
            for r in records
            if r.phase is Phase.ACTION and r.state is StepState.DONE and r.index >= 0
        }
        for index in range(state.step, len(saga.steps)):
            step = saga.steps[index]
            given = StepInput(state.context, dict(results))
            try:
                detail = self._act(saga_id, index, step, given)
            except _LeaseLost:
                raise
            except Exception as err:
                message = f"step {step.name!r} failed: {type(err).__name__}: {err}"
                self._append(
                    saga_id,
                    StepRecord(index, step.name, Phase.ACTION, StepState.FAILED, error=message),
                    status=SagaStatus.COMPENSATING,
                    step=index,
                    reason=message,
                )
                return self._backward(saga, saga_id, message)
            results[step.name] = detail
        self._append(
            saga_id,
            StepRecord(-1, "", Phase.ACTION, StepState.DONE),
            status=SagaStatus.COMPLETED,
            step=len(saga.steps),
        )
        return self.result(saga_id)

    def _act(self, saga_id: str, index: int, step: AnyStep, given: StepInput) -> dict[str, Any]:
        """One action with its retries: intent logged, action run, outcome logged."""
        for attempt in self.policy.retrying():
            with attempt:
                if isinstance(step, SqlStep):
                    return self._sql(saga_id, index, step, given)
                intent = step.prepare(given)
                self._append(
                    saga_id,
                    StepRecord(index, step.name, Phase.ACTION, StepState.STARTED, intent),
                    status=SagaStatus.RUNNING,
                    step=index,
                )
                detail = step.run(given, intent)
                self._append(
                    saga_id,
                    StepRecord(index, step.name, Phase.ACTION, StepState.DONE, detail),
                    status=SagaStatus.RUNNING,
                    step=index + 1,
                )
                return detail
        raise AssertionError("unreachable")  # pragma: no cover - retrying re-raises

    def _sql(self, saga_id: str, index: int, step: SqlStep, given: StepInput) -> dict[str, Any]:
        self._append(
            saga_id,
            StepRecord(index, step.name, Phase.ACTION, StepState.STARTED),
            status=SagaStatus.RUNNING,
            step=index,
        )
        out: dict[str, Any] = {}

        def body(conn: Any) -> dict[str, Any]:
            out.clear()
            out.update(step.fn(conn) or {})
            return out

        done = StepRecord(index, step.name, Phase.ACTION, StepState.DONE, out)
        self._atomic(saga_id, done, body, step=index + 1, isolation=step.isolation)
        return dict(out)

    def _backward(self, saga: Saga, saga_id: str, reason: str) -> SagaResult:
        records = self._load(saga_id)[1]
        pending = _to_compensate(records)
        details = {
            r.index: r.detail
            for r in records
            if r.phase is Phase.ACTION and r.state is StepState.DONE
        }
        for index in reversed(pending):
            step = saga.steps[index]
            try:
                outcome = self._undo(saga_id, index, step, details[index])
            except _LeaseLost:
                raise
            except Exception as err:
                message = f"compensation of {step.name!r} failed: {type(err).__name__}: {err}"
                self._append(
                    saga_id,
                    StepRecord(
                        index, step.name, Phase.COMPENSATION, StepState.FAILED, error=message
                    ),
                    status=SagaStatus.COMPENSATION_FAILED,
                    step=index,
                    reason=reason,
                )
                return self.result(saga_id)
            if outcome is None:
                continue
            state = StepState.CONFLICT if outcome.conflict else StepState.DONE
            self._append(
                saga_id,
                StepRecord(index, step.name, Phase.COMPENSATION, state, dict(outcome.detail)),
                status=SagaStatus.COMPENSATING,
                step=index,
                reason=reason,
            )
        self._append(
            saga_id,
            StepRecord(-1, "", Phase.COMPENSATION, StepState.DONE),
            status=SagaStatus.ROLLED_BACK,
            step=0,
            reason=reason,
        )
        return self.result(saga_id)

    def _atomic(
        self,
        saga_id: str,
        record: StepRecord,
        fn: Callable[[Any], object],
        *,
        step: int,
        isolation: str,
    ) -> None:
        """``fn(conn)`` and ``record`` in one transaction of the log (a SQL step's half)."""
        now = self.clock()
        ok, _ = self.log.atomic(
            saga_id,
            self.owner,
            attrs.evolve(record, at=now),
            fn,
            step=step,
            lease_expires_at=now + self.lease,
            now=now,
            isolation=isolation,
        )
        if not ok:
            raise _LeaseLost(saga_id)

    def _undo(
        self, saga_id: str, index: int, step: AnyStep, detail: Mapping[str, Any]
    ) -> Compensated | None:
        """One compensation with its retries; None when it recorded its own outcome (a SQL
        step's, in its transaction)."""
        if isinstance(step, SqlStep) and step.compensation is not None:
            compensation = step.compensation
            undone = StepRecord(index, step.name, Phase.COMPENSATION, StepState.DONE)
            for attempt in self.policy.retrying():
                with attempt:
                    self._atomic(
                        saga_id,
                        undone,
                        lambda conn: compensation(conn, detail),
                        step=index,
                        isolation=step.isolation,
                    )
                    return None
        if isinstance(step, SqlStep):
            return Compensated(False, {})
        for attempt in self.policy.retrying():
            with attempt:
                return step.compensate(detail)
        raise AssertionError("unreachable")  # pragma: no cover - retrying re-raises


def _to_compensate(records: Sequence[StepRecord]) -> list[int]:
    """Indices of actions done and not yet compensated, in step order."""
    done = {
        r.index
        for r in records
        if r.phase is Phase.ACTION and r.state is StepState.DONE and r.index >= 0
    }
    undone = {
        r.index
        for r in records
        if r.phase is Phase.COMPENSATION and r.state in (StepState.DONE, StepState.CONFLICT)
    }
    return sorted(done - undone)
