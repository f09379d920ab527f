"""A model check of the dual store: several managers over one bucket against a sequential model.

Hypothesis drives two or three hybrid managers (the writers) over one KV bucket and one SQL tier
with random puts (some with their own TTL), deletes, read-modify-writes from several threads at
once, entries written by another client (good ones, and bytes msstore cannot decode), flushes,
reconcile passes, sweeps, crashes (a manager dropped without flushing, then reopened: its
recovery runs), and clock advances past per-write TTLs, the bucket TTL and the tombstone
retention. After every read, the value must be what the model says: the newest acknowledged
write of the key, or nothing once it was deleted or its own TTL ran out.

What the system is asked to promise, and so what the model leaves out: a write is recoverable
while the bucket retains it, so before the clock moves past the bucket TTL every live manager
flushes and one recovery pass runs (what the flusher and the periodic pass do long before a
30-minute TTL); a tombstone may go once it is older than the retention, which exceeds the bucket
TTL. L1 is off: it is in-process and serves its own process's writes (its tests are elsewhere);
a read from another manager must see every tier's truth.

It runs on memory + memory (a fake clock shared by every tier) in the default suite, and on NATS
+ PostgreSQL with fewer examples and no clock advances (the servers keep real time). Set
``MSSTORE_MODEL_PROFILE=thorough`` for many more examples.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from msstore.backends.memory import MemoryKV, MemoryTable

from msstore.buckets import BucketConfig
from msstore.caching import L1Cache
from msstore.capabilities import Capability
from msstore.conflicts.update import RetryPolicy
from msstore.errors import SerializationError
from msstore.flushing import FlushPolicy
from msstore.hybrid import HybridStateManager
from msstore.protocols import DataStorage, KeyValueStore
from msstore.records import Operation

THOROUGH = os.environ.get("MSSTORE_MODEL_PROFILE") == "thorough"
BUCKET_TTL = 60  # seconds a value stays in the hot tier
RETENTION = 100.0  # tombstone retention (> the bucket TTL)
NAMES = ("a.x", "a.y", "b.x")  # two agents: hydration copies an agent's rows
COUNTER = "c.n"
POISON = "p.bad"


class Clock:
    """Unix seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


Stores = tuple[KeyValueStore, DataStorage, Callable[[], float], Callable[[], None]]


class DualStoreModel(RuleBasedStateMachine):
    """See the module docstring. ``make_stores`` is set by the test that runs it."""

    make_stores: Callable[[], Stores]
    fake_clock: bool = True
    managers_wanted: int = 3

    def __init__(self) -> None:
        super().__init__()
        self.kv, self.table, self.clock, self.cleanup = type(self).make_stores()
        self.prefix = uuid.uuid4().hex[:6]  # keys of this example only (real servers persist)
        self.model: dict[str, tuple[Any, float | None]] = {}  # key -> (value, own expiry)
        self.counter = 0
        self.last_sync = self.clock()
        self.managers: list[HybridStateManager] = []
        self.nul_refused = Capability.NUL_IN_STRINGS not in self.table.capabilities

    def key(self, name: str) -> str:
        agent, rest = name.split(".", 1)
        return f"{agent}{self.prefix}.{rest}"

    def open_manager(self) -> HybridStateManager:
        policy = FlushPolicy(
            threshold=1_000_000, max_lag=3600, reconcile_every=0, tombstone_retention=RETENTION
        )
        return HybridStateManager(
            self.kv, self.table, policy=policy, l1=L1Cache(max_size=0), clock=self.clock
        )

    @initialize()
    def open_managers(self) -> None:
        self.managers = [self.open_manager() for _ in range(self.managers_wanted)]

    def expected(self, name: str) -> Any:
        found = self.model.get(name)
        if found is None:
            return None
        value, expires_at = found
        return None if expires_at is not None and expires_at <= self.clock() else value

    managers_i = st.integers(min_value=0, max_value=2)

    def m(self, i: int) -> HybridStateManager:
        return self.managers[i % len(self.managers)]

    # Writes ------------------------------------------------------------------------------------

    @rule(i=managers_i, name=st.sampled_from(NAMES), value=st.integers(0, 99))
    def put(self, i: int, name: str, value: int) -> None:
        self.m(i).put(self.key(name), value)
        self.model[name] = (value, None)

    @precondition(lambda self: self.fake_clock)
    @rule(
        i=managers_i,
        name=st.sampled_from(NAMES),
        value=st.integers(0, 99),
        ttl=st.sampled_from([1, 2, 3]),
    )
    def put_with_ttl(self, i: int, name: str, value: int, ttl: int) -> None:
        self.m(i).put(self.key(name), value, ttl=ttl)
        self.model[name] = (value, self.clock() + ttl)

    @rule(i=managers_i, name=st.sampled_from(NAMES))
    def delete(self, i: int, name: str) -> None:
        self.m(i).delete(self.key(name))
        self.model.pop(name, None)

    @rule(name=st.sampled_from(NAMES), value=st.integers(100, 199))
    def another_client_writes(self, name: str, value: int) -> None:
        self.kv.put(self.key(name), value)  # acknowledged by KV: recovery must carry it to SQL
        self.model[name] = (value, None)

    @rule()
    def another_client_writes_bytes_msstore_cannot_decode(self) -> None:
        key = self.key(POISON)
        if isinstance(self.kv, MemoryKV):
            with self.kv._lock:  # no public way to store undecodable bytes, by design
                self.kv._append(key, b"\x00not json", Operation.PUT, None)
        else:
            raw_put = type(self).raw_put
            raw_put(f"{self.kv.name}", key, b"\x00not json")

    @rule(i=managers_i)
    def a_value_sql_cannot_hold_is_refused_before_kv(self, i: int) -> None:
        name = NAMES[0]
        if self.nul_refused:
            with pytest.raises(SerializationError):
                self.m(i).update_with(self.key(name), lambda _: "nul\x00inside")
        else:
            self.m(i).update_with(self.key(name), lambda _: "nul\x00inside")
            self.model[name] = ("nul\x00inside", None)

    @rule(
        threads=st.integers(2, 4),
        each=st.integers(1, 8),
        spread=st.booleans(),
    )
    def increments_from_threads(self, threads: int, each: int, spread: bool) -> None:
        key = self.key(COUNTER)
        errors: list[BaseException] = []

        def work(m: HybridStateManager) -> None:
            try:
                for _ in range(each):
                    m.update_with(key, lambda v: (v or 0) + 1, policy=RetryPolicy.hot_key())
            except BaseException as err:
                errors.append(err)

        workers = [
            threading.Thread(target=work, args=(self.m(t if spread else 0),))
            for t in range(threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        self.counter += threads * each

    # Background work ---------------------------------------------------------------------------

    @rule(i=managers_i)
    def flush(self, i: int) -> None:
        self.m(i).flush()

    @rule(i=managers_i)
    def reconcile(self, i: int) -> None:
        self.m(i).reconcile()

    @rule(i=managers_i)
    def sweep(self, i: int) -> None:
        self.m(i).sweep()

    @rule(i=managers_i)
    def crash_and_restart(self, i: int) -> None:
        slot = i % len(self.managers)
        self.managers[slot].abandon()
        self.managers[slot] = self.open_manager()  # its recovery runs, poison or not

    def sync(self) -> None:
        """What the flusher and the periodic pass do long before the bucket TTL runs out."""
        for m in self.managers:
            m.flush()
        self.managers[0].reconcile()
        self.last_sync = self.clock()

    @precondition(lambda self: self.fake_clock)
    @rule(seconds=st.floats(0.25, 4.0))
    def time_passes(self, seconds: float) -> None:
        if self.clock() + seconds - self.last_sync >= BUCKET_TTL - 5:
            self.sync()
        self.clock.now += seconds  # type: ignore[attr-defined]

    @precondition(lambda self: self.fake_clock)
    @rule(seconds=st.sampled_from([BUCKET_TTL + 1.0, RETENTION + 1.0, 2 * RETENTION]))
    def much_time_passes(self, seconds: float) -> None:
        self.sync()
        self.clock.now += seconds  # type: ignore[attr-defined]

    # Reads -------------------------------------------------------------------------------------

    @rule(i=managers_i, name=st.sampled_from(NAMES))
    def read(self, i: int, name: str) -> None:
        got = self.m(i).get(self.key(name))
        assert got == self.expected(name), (name, got, self.model.get(name), self.clock())

    @rule(i=managers_i)
    def read_counter(self, i: int) -> None:
        assert (self.m(i).get(self.key(COUNTER)) or 0) == self.counter

    @rule(name=st.sampled_from(NAMES))
    def read_through_a_new_manager(self, name: str) -> None:
        fresh = HybridStateManager(
            self.kv, self.table, l1=L1Cache(max_size=0), recover=False, clock=self.clock
        )
        try:
            assert fresh.get(self.key(name)) == self.expected(name)
        finally:
            fresh.close()

    @invariant()
    def the_watermark_is_never_stuck_behind_a_poison_entry(self) -> None:
        for m in self.managers:
            assert m.stats()["flush"]["failed"] == 0  # managers' own writes are all storable

    def teardown(self) -> None:
        try:
            for m in self.managers:
                m.flush()
            self.managers[0].reconcile()
            for name in NAMES:
                assert self.managers[0].get(self.key(name)) == self.expected(name), name
                row = self.table.retrieve(self.key(name))
                want = self.expected(name)
                if want is not None:  # every acknowledged, live value reached SQL
                    assert row is not None and row.value == want, (name, row, want)
            for m in self.managers:
                m.close()
        finally:
            self.cleanup()


def _run(*, examples: int, steps: int) -> None:
    run_state_machine_as_test(
        DualStoreModel,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_the_dual_store_matches_its_model_on_memory_backends() -> None:
    def make() -> Stores:
        clock = Clock()
        kv = MemoryKV(BucketConfig(name="model", ttl=BUCKET_TTL, history=5), clock=clock)
        return kv, MemoryTable(clock=clock), clock, lambda: None

    DualStoreModel.make_stores = staticmethod(make)  # type: ignore[assignment]
    DualStoreModel.fake_clock = True
    _run(examples=1000 if THOROUGH else 150, steps=60 if THOROUGH else 40)


@pytest.mark.nats
@pytest.mark.postgres
@pytest.mark.slow
def test_the_dual_store_matches_its_model_on_nats_and_postgres(
    nats_client: Any, pg_state_dsn: str
) -> None:
    import time

    from msstore.backends.nats import NatsKV
    from msstore.backends.postgres import PostgresStateStore

    store = PostgresStateStore(pg_state_dsn)

    def make() -> Stores:
        kv = NatsKV.open(nats_client, BucketConfig(name=f"model_{uuid.uuid4().hex[:8]}", history=5))

        def cleanup() -> None:
            kv.destroy()
            kv.close()

        return kv, store, time.time, cleanup

    def raw_put(bucket: str, key: str, raw: bytes) -> None:
        async def put(c: Any) -> None:
            await c.js.publish(f"$KV.{bucket}.{key}", raw)

        nats_client.run(put, write=True, what="raw put")

    DualStoreModel.make_stores = staticmethod(make)  # type: ignore[assignment]
    DualStoreModel.raw_put = staticmethod(raw_put)  # type: ignore[attr-defined]
    DualStoreModel.fake_clock = False
    try:
        _run(examples=60 if THOROUGH else 8, steps=40 if THOROUGH else 25)
    finally:
        store.close()
