"""A Hypothesis state machine over sagas on memory KV: several sagas on shared keys, processes
stopped after any write (actions and compensations), foreign writes between them, leases that
run out and recovery by another process. A process also stops right after any write to the
log commits (the start, an intent, an outcome, a SQL step's transaction). After recovery every
saga has ended, and:

* a foreign write that was the last new write to its key is still there (no compensation
  clobbers it);
* a saga's own value is live only if the saga completed, or it reports a conflict on that key;
* the last new write to a key, by a saga that completed, is live;
* each SQL step's effect is there exactly once for a completed saga, never for a rolled-back one;
* a stopped saga went forward only if its SQL step had committed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from msstore.backends.memory import MemoryKV, MemorySagaLog
from msstore.buckets import BucketConfig
from msstore.conflicts import RetryPolicy
from msstore.coordination import (
    FunctionStep,
    KvPut,
    Saga,
    SagaRunner,
    SagaStatus,
    SqlStep,
    StepInput,
)
from msstore.testing import FakeClock

KEYS = ("k0", "k1", "k2")
LEASE = 10.0


class Crash(BaseException):
    pass


class Crashing:
    """Delegates to ``target``; the process stops right after its ``at``-th write (a call of
    one of ``WRITES``) returns: the write landed, nothing after it ran."""

    WRITES: tuple[str, ...] = ()

    def __init__(self, target: Any, at: int | None) -> None:
        self.target, self.at, self.writes = target, at, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.target, name)
        if name not in self.WRITES:
            return attr

        def write(*args: Any, **kwargs: Any) -> Any:
            out = attr(*args, **kwargs)
            self.writes += 1
            if self.writes == self.at:
                raise Crash
            return out

        return write


class CrashingKV(Crashing):
    """A KV store that stops the process after a write lands."""

    WRITES = ("put", "create", "update", "delete")

    def put_many(
        self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], *, ttl: float | None = None
    ) -> list[int]:
        """Key by key, so that the process can stop with part of a batch landed."""
        pairs = items.items() if isinstance(items, Mapping) else items
        return [self.put(key, value, ttl=ttl) for key, value in pairs]


class CrashingLog(Crashing):
    """A saga log that stops the process after a write commits."""

    WRITES = ("start", "append", "atomic")


class Sagas(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.kv = MemoryKV(BucketConfig(name="m", history=64), clock=self.clock)
        self.log = MemorySagaLog()
        self.n = itertools.count(1)
        self.definitions: list[Saga] = []
        self.saga_of_name: dict[str, str] = {}  # saga name -> saga id
        self.sql_effects: dict[str, int] = {}
        self.open = 0  # sagas stopped mid-way, not yet recovered
        self.crashed: dict[str, int] = {}  # saga name -> its SQL effect when it stopped

    def runner(self) -> SagaRunner:
        return SagaRunner(
            self.log,
            sagas=self.definitions,
            lease=LEASE,
            policy=RetryPolicy(attempts=1),
            clock=self.clock,
        )

    @rule(
        keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True),
        sql=st.booleans(),
        fail=st.booleans(),
        crash_after=st.one_of(st.none(), st.integers(1, 6)),
        log_crash_after=st.one_of(st.none(), st.integers(1, 6)),
    )
    def run_saga(
        self,
        keys: list[str],
        sql: bool,
        fail: bool,
        crash_after: int | None,
        log_crash_after: int | None,
    ) -> None:
        name = f"s{next(self.n)}"
        writes = CrashingKV(self.kv, crash_after)
        steps: list[Any] = [KvPut(writes, k, value={"by": name, "n": next(self.n)}) for k in keys]
        if sql:

            def apply(conn: Any, name: str = name) -> Mapping[str, Any]:
                self.sql_effects[name] = self.sql_effects.get(name, 0) + 1
                return {"row": name}

            def undo(conn: Any, detail: Mapping[str, Any], name: str = name) -> None:
                self.sql_effects[name] -= 1

            steps.insert(len(steps) // 2, SqlStep("sql", apply, undo))
        if fail:

            def refuse(_: StepInput) -> Mapping[str, Any]:
                raise RuntimeError("refused")

            steps.append(FunctionStep("refuse", refuse))
        saga = Saga(name, steps)
        self.definitions.append(saga)
        runner = self.runner()
        runner.log = CrashingLog(self.log, log_crash_after)
        try:
            result = runner.run(saga)
        except Crash:
            self.open += 1
            self.crashed[name] = self.sql_effects.get(name, 0)
            found = [s for s in self.log.sagas() if s.name == name]
            self.saga_of_name[name] = found[0].saga_id
            if found[0].status is SagaStatus.COMPLETED:  # (stopped after its last write)
                self.crashed[name] = 1
            return
        self.saga_of_name[name] = result.saga_id

    @rule(key=st.sampled_from(KEYS), delete=st.booleans())
    def foreign_write(self, key: str, delete: bool) -> None:
        if delete:
            self.kv.delete(key)
        else:
            self.kv.put(key, {"by": "foreign", "n": next(self.n)})

    @precondition(lambda self: self.open > 0)
    @rule()
    def recover(self) -> None:
        self.clock.advance(LEASE + 1)
        while True:
            try:
                self.runner().recover()
                break
            except Crash:  # recovery itself was stopped: another process tries again
                self.clock.advance(LEASE + 1)
        self.open = 0

    @invariant()
    def ended_sagas_are_consistent(self) -> None:
        if self.open:
            return
        runner = self.runner()
        results = {name: runner.result(sid) for name, sid in self.saga_of_name.items()}
        assert all(r.status.ended for r in results.values()), results
        for name, result in results.items():
            effects = self.sql_effects.get(name, 0)
            assert effects == (
                1 if result.status is SagaStatus.COMPLETED and self._has_sql(name) else 0
            )
            if name in self.crashed and result.status is SagaStatus.COMPLETED:
                # resumed forward only past a committed SQL step (or already completed)
                assert self.crashed[name] == 1, (name, result)
        for key in KEYS:
            history = self.kv.history(key)
            live = self.kv.get(key)
            live_value = None if live is None else live.value
            firsts: list[Any] = []  # original writes (a restore repeats an earlier value)
            seen: set[Any] = set()
            for entry in history:
                value = entry.value if entry.operation.name == "PUT" else None
                mark = None if value is None else value["n"]
                if mark is None or mark not in seen:
                    firsts.append(value)
                    if mark is not None:
                        seen.add(mark)
            last = firsts[-1] if firsts else None
            if (
                last is None
                or last["by"] == "foreign"
                or results[last["by"]].status is SagaStatus.COMPLETED
            ):
                assert live_value == last, (key, live_value, last)
            if live_value is not None and live_value["by"] != "foreign":
                owner = results[live_value["by"]]
                assert owner.status is SagaStatus.COMPLETED or any(
                    c["key"] == key for c in owner.conflicts
                ), (key, live_value, owner)

    def _has_sql(self, name: str) -> bool:
        saga = next(s for s in self.definitions if s.name == name)
        return any(isinstance(s, SqlStep) for s in saga.steps)


TestSagas = Sagas.TestCase
TestSagas.settings = settings(max_examples=150, stateful_step_count=12, deadline=None)
