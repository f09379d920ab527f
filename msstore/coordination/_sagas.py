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

from msstore._internal import telemetry
from msstore.codec import default_codec
from msstore.conflicts.update import RetryPolicy
from msstore.errors import InvalidArgument, NotFound, OutcomeUnknown, StaleClaim, Unsupported

from ._outbox import OutboxSource
from ._saga_log import Phase, SagaLog, SagaState, SagaStatus, StepRecord, StepState
from ._saga_steps import (
    Compensated,
    Detail,
    KvPut,
    SqlStep,
    Step,
    StepInput,
    _KvStep,
    prepare_kv,
    run_kv,
)

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


class _Unsettled(Exception):
    """What happened cannot be told now; recovery settles it from the log later."""


class SagaRunner:
    """Runs sagas over a :class:`SagaLog`: ``run`` a saga, ``recover`` the sagas whose process
    stopped, ``compensate`` one by hand. ``sagas``: the definitions ``recover`` may meet, by
    name; ``lease``: seconds a run holds a saga without writing to its log; ``policy``: the
    retries of each step half; ``clock``: Unix seconds (a ``FakeClock`` in tests); ``outbox``:
    where ``Strategy.EVENTUAL`` writes its KV changes (on the log's database)."""

    def __init__(
        self,
        log: SagaLog,
        *,
        sagas: Iterable[Saga] = (),
        lease: float = 30.0,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        outbox: OutboxSource | None = None,
    ) -> None:
        if not isinstance(lease, int | float) or isinstance(lease, bool) or not 0 < lease <= 86400:
            raise InvalidArgument(f"lease must be seconds in (0, 86400], got {lease!r}")
        self.log = log
        self.definitions = {s.name: s for s in sagas}
        self.lease = float(lease)
        self.policy = policy or RetryPolicy()
        self.clock = clock
        self.owner = owner or _owner()
        self.outbox = outbox

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
        self,
        saga: Saga,
        context: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        strategy: str = Strategy.SAGA,
    ) -> SagaResult:
        """Run ``saga`` with ``context`` (JSON) to its end and return how it ended. ``key``:
        an idempotency key; a saga already started with it is not run again, its result is
        returned (its current status if another process is still running it).
        ``strategy``: ``Strategy.SAGA`` (the steps in order, compensated on failure) or
        ``Strategy.EVENTUAL`` (the SQL step commits with the KV puts as outbox events, which
        the relay then publishes to the buckets; see :meth:`check_strategy`)."""
        if key is not None and (not isinstance(key, str) or not key or len(key) > 255):
            raise InvalidArgument(
                f"key must be a non-empty str of at most 255 characters, got {key!r}"
            )
        self.check_strategy(strategy)
        context = dict(context or {})
        default_codec.encode_canonical(context)  # refuse what cannot be logged, nothing written
        if strategy == Strategy.EVENTUAL:
            return self._eventual(saga, context, key)
        self.definitions.setdefault(saga.name, saga)
        # The first KV steps' intents go in the saga's first write (read-only until then).
        first = _batch(saga, 0, set())
        given = StepInput(context, {})
        try:
            prepared: _Prepared | None = (first, self._prepare(saga, first, given))
        except Exception:  # (the forward pass prepares again and fails the step properly)
            prepared = None
        state = self._new_state(saga, context, key)
        intents = [] if prepared is None else _intents(saga, *prepared, state.created_at)
        started = self.log.start(state, intents)
        if started.saga_id != state.saga_id:
            return self.result(started.saga_id)
        return self._guarded(
            started.saga_id,
            lambda: self._forward(saga, started.saga_id, context, intents, prepared),
        )

    def _eventual(self, saga: Saga, context: dict[str, Any], key: str | None) -> SagaResult:
        """One transaction: the SQL step, its KV puts as outbox events on the buckets'
        subjects (published later by the relay, exactly once by their message ids), and the
        saga's whole log. Nothing to compensate: it commits whole or not at all."""
        sql = [(i, s) for i, s in enumerate(saga.steps) if isinstance(s, SqlStep)]
        puts = [s for s in saga.steps if not isinstance(s, SqlStep)]
        if len(sql) != 1 or not all(type(s) is KvPut for s in puts):
            raise Unsupported(
                f"saga {saga.name!r}: Strategy.EVENTUAL runs one SqlStep and KvPut steps "
                f"(got {[type(s).__name__ for s in saga.steps]})",
                hint="the relay publishes a put; it cannot check a revision, create or delete",
            )
        if self.outbox is None:
            raise InvalidArgument(
                "Strategy.EVENTUAL needs SagaRunner(outbox=...): the outbox of the log's database"
            )
        outbox = self.outbox
        self.definitions.setdefault(saga.name, saga)  # (recovery rolls back one that stopped)
        events = [(f"$KV.{s.kv.name}.{s.key}", s.value) for s in puts if isinstance(s, KvPut)]
        index, step = sql[0]
        state = self._new_state(saga, context, key)
        started = self.log.start(state)
        if started.saga_id != state.saga_id:
            return self.result(started.saga_id)
        out: Detail = {}

        def body(conn: Any) -> None:
            out.clear()
            out.update(step.fn(conn) or {})
            outbox.add_many(events, conn=conn)

        records = [
            StepRecord(i, s.name, Phase.ACTION, StepState.DONE, {"outbox": subject})
            for (i, s), (subject, _) in zip(
                ((i, s) for i, s in enumerate(saga.steps) if i != index), events, strict=True
            )
        ]
        records.insert(index, StepRecord(index, step.name, Phase.ACTION, StepState.DONE, out))
        records.append(StepRecord(-1, "", Phase.ACTION, StepState.DONE))

        def commit() -> SagaResult:
            try:
                for attempt in self.policy.retrying():
                    with attempt:
                        self._atomic(
                            state.saga_id,
                            records,
                            body,
                            status=SagaStatus.COMPLETED,
                            step=len(saga.steps),
                            reason=None,
                            isolation=step.isolation,
                            timeout=step.timeout,
                        )
            except (_LeaseLost, _Unsettled):
                raise
            except Exception as err:
                return self._fail(saga, state.saga_id, index, step, err, [], {})
            return SagaResult(state.saga_id, SagaStatus.COMPLETED)

        return self._guarded(state.saga_id, commit)

    def _new_state(self, saga: Saga, context: Mapping[str, Any], key: str | None) -> SagaState:
        now = self.clock()
        return SagaState(
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
        reason = state.reason or "compensated by an operator"
        return self._guarded(saga_id, lambda: self._backward(saga, saga_id, reason))

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
        records: Sequence[StepRecord],
        *,
        status: SagaStatus,
        step: int,
        reason: str | None = None,
    ) -> None:
        now = self.clock()
        lease = None if status.ended else now + self.lease
        if not self.log.append(
            saga_id,
            self.owner,
            [attrs.evolve(r, at=now) for r in records],
            status=status,
            step=step,
            reason=reason,
            lease_expires_at=lease,
            now=now,
        ):
            raise _LeaseLost(saga_id)

    def _guarded(self, saga_id: str, fn: Callable[[], SagaResult]) -> SagaResult:
        """``fn()``, or what the log says when this process must stop driving the saga."""
        try:
            result = fn()
        except _LeaseLost:
            log.warning("saga %s: lease lost to another process; leaving it to that one", saga_id)
        except _Unsettled as err:
            log.warning("saga %s: %s; recovery will settle it from the log", saga_id, err)
            return self.result(saga_id)
        if result.status.ended:  # what the metrics count: sagas this process ended, by how
            telemetry.counter("sagas", result.status.value).inc()
        return result

    def _drive(self, saga: Saga, saga_id: str, *, resumed: bool = False) -> SagaResult:
        def drive() -> SagaResult:
            state, records = self._load(saga_id)
            if state.status is SagaStatus.COMPENSATING:
                return self._backward(saga, saga_id, state.reason or "compensating")
            if resumed:
                records = self._settle_interrupted(saga, saga_id, records)
                if not any(
                    isinstance(saga.steps[i], SqlStep) and r.state is StepState.DONE
                    for i, r in _last_actions(records).items()
                ):
                    return self._backward(
                        saga, saga_id, "its process stopped before the SQL step committed"
                    )
            return self._forward(saga, saga_id, state.context, records)

        return self._guarded(saga_id, drive)

    def _settle_interrupted(
        self, saga: Saga, saga_id: str, records: Sequence[StepRecord]
    ) -> Sequence[StepRecord]:
        """Record the outcome of every action whose intent is the last thing logged of it."""
        settled = []
        for index, last in sorted(_last_actions(records).items()):
            if last.state is not StepState.STARTED:
                continue
            step = saga.steps[index]
            detail = None if isinstance(step, SqlStep) else step.landed(last.detail)
            if detail is None:
                settled.append(
                    attrs.evolve(last, state=StepState.FAILED, error="interrupted: did not land")
                )
            else:
                settled.append(attrs.evolve(last, state=StepState.DONE, detail=detail))
        if not settled:
            return records
        self._append(saga_id, settled, status=SagaStatus.RUNNING, step=settled[0].index)
        return [*records, *settled]

    def _prepare(self, saga: Saga, batch: Sequence[int], given: StepInput) -> list[Detail]:
        """The intents of the steps ``batch``: KV steps' read together, another step's alone."""
        steps = [saga.steps[i] for i in batch]
        if all(isinstance(s, _KvStep) for s in steps):
            return prepare_kv([s for s in steps if isinstance(s, _KvStep)], given)
        (step,) = steps
        assert not isinstance(step, SqlStep)
        return [step.prepare(given)]

    def _forward(
        self,
        saga: Saga,
        saga_id: str,
        context: Mapping[str, Any],
        records: Sequence[StepRecord],
        prepared: _Prepared | None = None,
    ) -> SagaResult:
        """Run the steps not done yet, in order. A run of KV steps on distinct keys is one
        batch: their intents are read together and logged in one write before the first of
        them runs; their outcomes are logged with the next write, which comes before any
        later step runs (a SQL step's transaction, the next intents, or the end)."""
        n = len(saga.steps)
        finished = {i: r for i, r in _last_actions(records).items() if r.state is StepState.DONE}
        done = set(finished)
        results = {saga.steps[i].name: r.detail for i, r in finished.items()}
        pending: list[StepRecord] = []  # outcomes not logged yet
        index = 0
        while index < n:
            if index in done:
                index += 1
                continue
            step = saga.steps[index]
            given = StepInput(context, dict(results))
            if isinstance(step, SqlStep):
                final = all(i in done for i in range(index + 1, n))
                try:
                    detail = self._sql(saga_id, index, step, pending, final=final, n=n)
                except (_LeaseLost, _Unsettled):
                    raise
                except Exception as err:
                    return self._fail(saga, saga_id, index, step, err, pending, {})
                if final:
                    return SagaResult(saga_id, SagaStatus.COMPLETED)
                done.add(index)
                results[step.name] = detail
                continue
            batch = _batch(saga, index, done)
            if prepared is not None and list(prepared[0]) == batch:
                intents = prepared[1]  # (logged with the saga's start)
            else:
                try:
                    intents = self._prepare(saga, batch, given)
                except Exception as err:
                    return self._fail(saga, saga_id, index, step, err, pending, {})
                self._append(
                    saga_id,
                    [*pending, *_intents(saga, batch, intents, 0.0)],
                    status=SagaStatus.RUNNING,
                    step=index,
                )
                pending.clear()
            prepared = None
            failure = self._run_batch(saga, saga_id, batch, intents, given, pending, results)
            done.update(i for i in batch if saga.steps[i].name in results)
            if failure is not None:  # (after the outcomes of the batch's other steps)
                at, action, error, intent = failure
                return self._fail(saga, saga_id, at, action, error, pending, intent)
        self._append(
            saga_id,
            [*pending, StepRecord(-1, "", Phase.ACTION, StepState.DONE)],
            status=SagaStatus.COMPLETED,
            step=n,
        )
        return SagaResult(saga_id, SagaStatus.COMPLETED)

    def _run_batch(  # noqa: PLR0917 - a batch and where its outcomes go
        self,
        saga: Saga,
        saga_id: str,
        batch: Sequence[int],
        intents: Sequence[Detail],
        given: StepInput,
        pending: list[StepRecord],
        results: dict[str, Mapping[str, Any]],
    ) -> tuple[int, AnyStep, Exception, Detail] | None:
        """Run the actions of one batch (KV puts together), adding each outcome to
        ``pending`` and ``results``; the first step that failed after its retries, if any (the
        steps after it that had not run yet do not run)."""
        kv_steps = [s for s in (saga.steps[i] for i in batch) if isinstance(s, _KvStep)]
        firsts: list[Detail | Exception | None] = (
            list(run_kv(kv_steps, given, intents))
            if len(kv_steps) == len(batch) > 1
            else [None] * len(batch)
        )
        failure: tuple[int, AnyStep, Exception, Detail] | None = None
        for i, intent, first in zip(batch, intents, firsts, strict=True):
            action = saga.steps[i]
            assert not isinstance(action, SqlStep)
            if failure is not None and first is None:
                break
            try:
                detail = self._act(saga_id, i, action, given, intent, pending=pending, first=first)
            except _LeaseLost:
                raise
            except Exception as err:
                failure = failure or (i, action, err, intent)
                continue
            pending.append(StepRecord(i, action.name, Phase.ACTION, StepState.DONE, detail))
            results[action.name] = detail
        return failure

    def _act(
        self,
        saga_id: str,
        index: int,
        step: Step,
        given: StepInput,
        intent: Detail,
        *,
        pending: list[StepRecord],
        first: Detail | Exception | None = None,
    ) -> Detail:
        """One action with its retries (each retry prepares and logs its intent again);
        ``first``: the first attempt's outcome when it ran in a batch. An action whose outcome
        is unknown is looked for (``landed``) before it counts as failed."""
        for attempt in self.policy.retrying():
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    first = None
                    intent = step.prepare(given)
                    started = StepRecord(index, step.name, Phase.ACTION, StepState.STARTED, intent)
                    self._append(
                        saga_id, [*pending, started], status=SagaStatus.RUNNING, step=index
                    )
                    pending.clear()
                outcome = first
                if outcome is None:
                    try:
                        outcome = step.run(given, intent)
                    except Exception as err:
                        outcome = err
                if isinstance(outcome, OutcomeUnknown):
                    landed = step.landed(intent)
                    if landed is not None:
                        return landed
                if isinstance(outcome, Exception):
                    raise outcome
                return outcome
        raise AssertionError("unreachable")  # pragma: no cover - retrying re-raises

    def _fail(  # noqa: PLR0917 - the failed step and what the log still lacks
        self,
        saga: Saga,
        saga_id: str,
        index: int,
        step: AnyStep,
        err: Exception,
        pending: list[StepRecord],
        intent: Mapping[str, Any],
    ) -> SagaResult:
        """Log the failure (with the outcomes not logged yet) and compensate. An action whose
        outcome stayed unknown is compensated too: it may still have happened."""
        message = f"step {step.name!r} failed: {type(err).__name__}: {err}"
        detail = {**intent, "outcome_unknown": True} if isinstance(err, OutcomeUnknown) else {}
        failed = StepRecord(index, step.name, Phase.ACTION, StepState.FAILED, detail, message)
        self._append(
            saga_id,
            [*pending, failed],
            status=SagaStatus.COMPENSATING,
            step=index,
            reason=message,
        )
        pending.clear()
        return self._backward(saga, saga_id, message)

    def _sql(
        self,
        saga_id: str,
        index: int,
        step: SqlStep,
        pending: list[StepRecord],
        *,
        final: bool,
        n: int,
    ) -> Detail:
        """A SQL step's transaction, with the outcomes not logged yet and its own (and the
        saga's end, when it is the last step). Retried as a whole."""
        out: Detail = {}

        def body(conn: Any) -> Detail:
            out.clear()
            out.update(step.fn(conn) or {})
            return out

        records = [*pending, StepRecord(index, step.name, Phase.ACTION, StepState.DONE, out)]
        if final:
            records.append(StepRecord(-1, "", Phase.ACTION, StepState.DONE))
        status = SagaStatus.COMPLETED if final else SagaStatus.RUNNING
        for attempt in self.policy.retrying():
            with attempt:
                try:
                    self._atomic(
                        saga_id,
                        records,
                        body,
                        status=status,
                        step=index + 1 if not final else n,
                        reason=None,
                        isolation=step.isolation,
                        timeout=step.timeout,
                    )
                except OutcomeUnknown as err:
                    raise _Unsettled(f"the commit of step {step.name!r} is unknown") from err
                pending.clear()
                return dict(out)
        raise AssertionError("unreachable")  # pragma: no cover - retrying re-raises

    def _backward(self, saga: Saga, saga_id: str, reason: str) -> SagaResult:
        records = self._load(saga_id)[1]
        details = _compensable(records)
        for index in reversed(_to_compensate(records)):
            step = saga.steps[index]
            try:
                outcome = self._undo(saga_id, index, step, details[index], reason)
            except _LeaseLost:
                raise
            except Exception as err:
                message = f"compensation of {step.name!r} failed: {type(err).__name__}: {err}"
                self._append(
                    saga_id,
                    [
                        StepRecord(
                            index, step.name, Phase.COMPENSATION, StepState.FAILED, error=message
                        )
                    ],
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
                [StepRecord(index, step.name, Phase.COMPENSATION, state, dict(outcome.detail))],
                status=SagaStatus.COMPENSATING,
                step=index,
                reason=reason,
            )
        self._append(
            saga_id,
            [StepRecord(-1, "", Phase.COMPENSATION, StepState.DONE)],
            status=SagaStatus.ROLLED_BACK,
            step=0,
            reason=reason,
        )
        return self.result(saga_id)

    def _atomic(
        self,
        saga_id: str,
        records: Sequence[StepRecord],
        fn: Callable[[Any], object],
        *,
        status: SagaStatus,
        step: int,
        reason: str | None,
        isolation: str,
        timeout: float | None,
    ) -> None:
        """``fn(conn)`` and ``records`` in one transaction of the log (a SQL step's half)."""
        now = self.clock()
        ok, _ = self.log.atomic(
            saga_id,
            self.owner,
            [attrs.evolve(r, at=now) for r in records],
            fn,
            status=status,
            step=step,
            reason=reason,
            lease_expires_at=None if status.ended else now + self.lease,
            now=now,
            isolation=isolation,
            timeout=timeout,
        )
        if not ok:
            raise _LeaseLost(saga_id)

    def _undo(
        self, saga_id: str, index: int, step: AnyStep, detail: Mapping[str, Any], reason: str
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
                        [undone],
                        lambda conn: compensation(conn, detail),
                        status=SagaStatus.COMPENSATING,
                        step=index,
                        reason=reason,
                        isolation=step.isolation,
                        timeout=step.timeout,
                    )
                    return None
        if isinstance(step, SqlStep):
            return Compensated(False, {})
        for attempt in self.policy.retrying():
            with attempt:
                return step.compensate(detail)
        raise AssertionError("unreachable")  # pragma: no cover - retrying re-raises


_Prepared = tuple[Sequence[int], Sequence["Detail"]]


def _last_actions(records: Sequence[StepRecord]) -> dict[int, StepRecord]:
    """Each step's latest action record, by index."""
    return {r.index: r for r in records if r.phase is Phase.ACTION and r.index >= 0}


def _batch(saga: Saga, index: int, done: set[int]) -> list[int]:
    """The steps from ``index`` that run as one batch: consecutive KV steps not done yet, on
    distinct keys (any other step alone; a SQL step never)."""
    step = saga.steps[index]
    if not isinstance(step, _KvStep):
        return [] if isinstance(step, SqlStep) else [index]
    batch, keys = [index], {(id(step.kv), step.key)}
    for i in range(index + 1, len(saga.steps)):
        nxt = saga.steps[i]
        if i in done or not isinstance(nxt, _KvStep) or (id(nxt.kv), nxt.key) in keys:
            break
        batch.append(i)
        keys.add((id(nxt.kv), nxt.key))
    return batch


def _intents(
    saga: Saga, batch: Sequence[int], intents: Sequence[Detail], at: float
) -> list[StepRecord]:
    return [
        StepRecord(i, saga.steps[i].name, Phase.ACTION, StepState.STARTED, intent, at=at)
        for i, intent in zip(batch, intents, strict=True)
    ]


def _compensable(records: Sequence[StepRecord]) -> dict[int, Mapping[str, Any]]:
    """The detail each action to compensate left: its outcome's, or (outcome unknown) its
    intent's."""
    found: dict[int, Mapping[str, Any]] = {}
    for r in records:
        if r.phase is Phase.ACTION and r.index >= 0 and _may_have_happened(r):
            found[r.index] = r.detail
    return found


def _may_have_happened(record: StepRecord) -> bool:
    return record.state is StepState.DONE or (
        record.state is StepState.FAILED and bool(record.detail.get("outcome_unknown"))
    )


def _to_compensate(records: Sequence[StepRecord]) -> list[int]:
    """Indices of actions done (or of unknown outcome) and not yet compensated, in order."""
    undone = {
        r.index
        for r in records
        if r.phase is Phase.COMPENSATION and r.state in (StepState.DONE, StepState.CONFLICT)
    }
    return sorted(set(_compensable(records)) - undone)
