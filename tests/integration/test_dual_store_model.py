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

import contextlib
import json
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from msstore import errors
from msstore.backends.memory import MemoryKV, MemoryTable
from msstore.buckets import BucketConfig
from msstore.capabilities import Capability
from msstore.conflicts.update import RetryPolicy
from msstore.errors import SerializationError
from msstore.protocols import DataStorage, KeyValueStore
from msstore.state import FlushPolicy, HybridStateManager, L1Cache
from msstore.testing import FakeClock
from msstore.testing.foreign import foreign_put

from ._models import THOROUGH, run_model

BUCKET_TTL = 60  # seconds a value stays in the hot tier
RETENTION = 100.0  # tombstone retention (> the bucket TTL)
NAMES = ("a.x", "a.y", "b.x")  # two agents: hydration copies an agent's rows
COUNTER = "c.n"
POISON = "p.bad"

CHILD = str(Path(__file__).with_name("hybrid_child.py"))


class ManagerProcess:
    """A hybrid manager in a process of its own (``hybrid_child.py serve``), called over pipes;
    :meth:`abandon` kills it with SIGKILL. Errors come back as the msstore errors they were."""

    def __init__(self, nats_url: str, dsn: str, bucket: str) -> None:
        self._child = subprocess.Popen(
            [sys.executable, CHILD, "serve", nats_url, dsn, bucket],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()
        assert self._read() == "ready"

    def _read(self) -> Any:
        assert self._child.stdout is not None
        answer = json.loads(self._child.stdout.readline())
        if "error" in answer:
            raise getattr(errors, answer["error"], errors.MsstoreError)(answer["message"])
        return answer["ok"]

    def call(self, op: str, **args: Any) -> Any:
        assert self._child.stdin is not None
        with self._lock:
            self._child.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self._child.stdin.flush()
            return self._read()

    def put(self, key: str, value: Any, *, ttl: int | None = None) -> int:
        return int(self.call("put", key=key, value=value, ttl=ttl))

    def delete(self, key: str) -> int:
        return int(self.call("delete", key=key))

    def get(self, key: str) -> Any:
        return self.call("get", key=key)

    def flush(self) -> None:
        self.call("flush")

    def reconcile(self) -> None:
        self.call("reconcile")

    def sweep(self) -> None:
        self.call("sweep")

    def abandon(self) -> None:
        self._child.send_signal(signal.SIGKILL)
        self._child.wait(30)
        self._release()

    def close(self) -> None:
        assert self._child.stdin is not None
        self._child.stdin.close()
        self._child.wait(60)
        self._release()

    def _release(self) -> None:
        for pipe in (self._child.stdin, self._child.stdout):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()


Manager = HybridStateManager | ManagerProcess


def _increment(m: Manager, key: str) -> None:
    if isinstance(m, ManagerProcess):
        m.call("increment", key=key)
    else:
        m.update_with(key, lambda v: (v or 0) + 1, policy=RetryPolicy.hot_key())


def _write_with_update(m: Manager, key: str, value: Any) -> None:
    if isinstance(m, ManagerProcess):
        m.call("write", key=key, value=value)
    else:
        m.update_with(key, lambda _: value)


def _refused(m: Manager) -> int:
    if isinstance(m, ManagerProcess):
        return int(m.call("failed"))
    return int(m.stats()["flush"]["failed"])


Stores = tuple[KeyValueStore, DataStorage, Callable[[], float], Callable[[], None]]


class DualStoreModel(RuleBasedStateMachine):
    """See the module docstring. ``make_stores`` is set by the test that runs it."""

    make_stores: Callable[[], Stores]
    fake_clock: bool = True
    managers_wanted: int = 3
    processes: tuple[str, str] | None = None  # (nats url, dsn): managers in processes of their own

    def __init__(self) -> None:
        super().__init__()
        self.kv, self.table, self.clock, self.cleanup = type(self).make_stores()
        self.prefix = uuid.uuid4().hex[:6]  # keys of this example only (real servers persist)
        self.model: dict[str, tuple[Any, float | None]] = {}  # key -> (value, own expiry)
        self.counter = 0
        self.last_sync = self.clock()
        self.managers: list[Manager] = []
        self.nul_refused = Capability.NUL_IN_STRINGS not in self.table.capabilities

    def key(self, name: str) -> str:
        agent, rest = name.split(".", 1)
        return f"{agent}{self.prefix}.{rest}"

    def open_manager(self) -> Manager:
        if self.processes is not None:
            return ManagerProcess(*self.processes, self.kv.name)
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

    def m(self, i: int) -> Manager:
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
        foreign_put(self.kv, self.key(POISON), b"\x00not json")

    @rule(i=managers_i)
    def a_value_sql_cannot_hold_is_refused_before_kv(self, i: int) -> None:
        name = NAMES[0]
        if self.nul_refused:
            with pytest.raises(SerializationError):
                _write_with_update(self.m(i), self.key(name), "nul\x00inside")
        else:
            _write_with_update(self.m(i), self.key(name), "nul\x00inside")
            self.model[name] = ("nul\x00inside", None)

    @rule(
        threads=st.integers(2, 4),
        each=st.integers(1, 8),
        spread=st.booleans(),
    )
    def increments_from_threads(self, threads: int, each: int, spread: bool) -> None:
        key = self.key(COUNTER)
        errors: list[BaseException] = []

        def work(m: Manager) -> None:
            try:
                for _ in range(each):
                    _increment(m, key)
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
        assert isinstance(self.clock, FakeClock)
        self.clock.advance(seconds)

    @precondition(lambda self: self.fake_clock)
    @rule(seconds=st.sampled_from([BUCKET_TTL + 1.0, RETENTION + 1.0, 2 * RETENTION]))
    def much_time_passes(self, seconds: float) -> None:
        self.sync()
        assert isinstance(self.clock, FakeClock)
        self.clock.advance(seconds)

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
            assert _refused(m) == 0  # managers' own writes are all storable

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
    run_model(DualStoreModel, examples=examples, steps=steps)


def test_the_dual_store_matches_its_model_on_memory_backends() -> None:
    def make() -> Stores:
        clock = FakeClock(1_800_000_000.0)
        kv = MemoryKV(BucketConfig(name="model", ttl=BUCKET_TTL, history=5), clock=clock)
        return kv, MemoryTable(clock=clock), clock, lambda: None

    DualStoreModel.make_stores = staticmethod(make)
    DualStoreModel.fake_clock = True
    _run(examples=1000 if THOROUGH else 150, steps=60 if THOROUGH else 40)


def _on_real_servers(
    nats_client: Any,
    dsn: str,
    *,
    processes: tuple[str, str] | None,
    examples: int,
    steps: int,
) -> None:
    import time

    from msstore.backends.nats import NatsKV
    from msstore.backends.postgres import PostgresStateStore

    store = PostgresStateStore(dsn)

    def make() -> Stores:
        kv = NatsKV.open(nats_client, BucketConfig(name=f"model_{uuid.uuid4().hex[:8]}", history=5))

        def cleanup() -> None:
            kv.destroy()
            kv.close()

        return kv, store, time.time, cleanup

    DualStoreModel.make_stores = staticmethod(make)
    DualStoreModel.fake_clock = False
    DualStoreModel.processes = processes
    try:
        _run(examples=examples, steps=steps)
    finally:
        DualStoreModel.processes = None
        store.close()


@pytest.mark.nats
@pytest.mark.postgres
@pytest.mark.slow
def test_the_dual_store_matches_its_model_on_nats_and_postgres(
    nats_client: Any, pg_state_dsn: str
) -> None:
    _on_real_servers(
        nats_client,
        pg_state_dsn,
        processes=None,
        examples=60 if THOROUGH else 8,
        steps=40 if THOROUGH else 25,
    )


@pytest.mark.nats
@pytest.mark.postgres
@pytest.mark.slow
def test_the_dual_store_matches_its_model_with_managers_in_separate_processes(
    nats_client: Any, msstore_nats_url: str, pg_state_dsn: str
) -> None:
    # Crashes are real here: a manager's process is killed with SIGKILL, and a new one opens.
    _on_real_servers(
        nats_client,
        pg_state_dsn,
        processes=(msstore_nats_url, pg_state_dsn),
        examples=25 if THOROUGH else 3,
        steps=40 if THOROUGH else 15,
    )
