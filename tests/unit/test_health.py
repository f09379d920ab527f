"""The health report's rules: latency classes, how checks add up, and each tier's check on the
in-memory backends (the servers' checks run in tests/integration/test_health.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from msstore.backends.memory import MemoryKV, MemoryOutbox, MemoryTable, MemoryTaskQueue
from msstore.errors import ConnectionFailed, InvalidArgument
from msstore.ops import (
    EXIT_CODES,
    Check,
    HealthReport,
    JetStreamProbe,
    LatencyLimits,
    PostgresProbe,
    StreamFacts,
    Thresholds,
    classify_latency,
    health,
)
from msstore.records import HealthStatus
from msstore.state import HybridStateManager
from msstore.testing import FakeClock

H, D, U = HealthStatus.HEALTHY, HealthStatus.DEGRADED, HealthStatus.UNHEALTHY


class Rtt:
    """A PostgreSQL probe answering with the round trips it is given, in turn."""

    def __init__(self, *trips: float | Exception, stats: Mapping[str, int] | None = None) -> None:
        self.trips = list(trips)
        self.stats = dict(stats or {})

    def roles(self) -> Sequence[str]:
        return ["primary"]

    def round_trip(self, role: str) -> float:
        trip = self.trips.pop(0) if len(self.trips) > 1 else self.trips[0]
        if isinstance(trip, Exception):
            raise trip
        return trip

    def pool_stats(self, role: str) -> Mapping[str, int]:
        return self.stats


class Js:
    def __init__(self, facts: list[StreamFacts], ping: float | Exception = 1.0) -> None:
        self.facts, self._ping = facts, ping

    def ping(self) -> float:
        if isinstance(self._ping, Exception):
            raise self._ping
        return self._ping

    def account(self) -> Mapping[str, int]:
        return {"streams": len(self.facts), "storage": 10, "memory": 0, "consumers": 0}

    def streams(
        self, *, buckets: Sequence[str], streams: Sequence[str] | None
    ) -> list[StreamFacts]:
        return self.facts


def by_name(report: HealthReport) -> dict[str, Check]:
    return {c.name: c for c in report.checks}


def test_latency_classes_meet_at_their_limits() -> None:
    pg = Thresholds().postgres
    got = [classify_latency(x, pg) for x in (0.5, 9.99, 10.0, 99.9, 100.0, None)]
    assert got == [H, H, D, D, U, U]
    js = Thresholds().jetstream
    assert [classify_latency(x, js) for x in (49.9, 50.0, 10_000.0)] == [H, D, D]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"degraded_ms": 0}, "degraded_ms"),
        ({"degraded_ms": float("nan")}, "degraded_ms"),
        ({"degraded_ms": True}, "degraded_ms"),
        ({"degraded_ms": 10, "unhealthy_ms": 10}, "unhealthy_ms"),
        ({"degraded_ms": 10, "unhealthy_ms": -1}, "unhealthy_ms"),
    ],
)
def test_bad_limits_name_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidArgument, match=field):
        LatencyLimits(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pool_utilisation": 0}, "pool_utilisation"),
        ({"pool_utilisation": 1.5}, "pool_utilisation"),
        ({"relay_window": -1}, "relay_window"),
        ({"pending_task_age": float("inf")}, "pending_task_age"),
    ],
)
def test_bad_thresholds_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument, match=field):
        Thresholds(**kwargs)


def test_health_refuses_bad_arguments() -> None:
    with pytest.raises(InvalidArgument, match="thresholds"):
        health(thresholds={"postgres": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="buckets"):
        health(nats=Js([]), buckets="agents")


def test_the_worst_check_decides_and_sets_the_exit_code() -> None:
    assert health().status is H and health().exit_code == 0
    assert EXIT_CODES == {H: 0, D: 1, U: 2}
    report = HealthReport(
        checks=(
            Check(name="a", status=H, reason="fine"),
            Check(name="b", status=D, reason="slow"),
            Check(name="c", status=U, reason="down"),
        ),
        took_ms=1.0,
    )
    assert report.status is U and report.exit_code == 2
    assert [c.name for c in report.failing()] == ["c", "b"]
    lines = report.lines()
    assert lines[-1] == "overall: UNHEALTHY" and lines[2].startswith("UNHEALTHY c")
    assert report.as_dict()["checks"][1] == {  # type: ignore[index]
        "name": "b",
        "status": "DEGRADED",
        "latency_ms": None,
        "reason": "slow",
        "details": {},
    }


def test_postgres_check_takes_the_fastest_round_trip() -> None:
    # One slow scheduling slice does not make a server degraded; a slow server is slow each time.
    assert isinstance(Rtt(1.0), PostgresProbe)
    check = by_name(health(postgres=Rtt(250.0, 2.0, 40.0)))["postgres.primary"]
    assert check.status is H and check.latency_ms == 2.0
    slow = by_name(health(postgres=Rtt(40.0)))["postgres.primary"]
    assert slow.status is D and "healthy under 10 ms" in slow.reason
    assert by_name(health(postgres=Rtt(150.0)))["postgres.primary"].status is U


def test_an_unreachable_postgres_fails_its_check_and_the_checks_in_its_database() -> None:
    down = Rtt(ConnectionFailed("cannot connect to PostgreSQL at pg:5432: refused"))
    report = health(postgres=down, outbox=MemoryOutbox(), queue=MemoryTaskQueue())
    checks = by_name(report)
    assert report.exit_code == 2
    assert checks["postgres.primary"].reason == "cannot connect to PostgreSQL at pg:5432: refused"
    assert checks["relay"].reason == checks["tasks"].reason == "PostgreSQL unreachable"


def test_a_full_pool_is_degraded() -> None:
    busy = Rtt(1.0, stats={"pool_size": 10, "pool_available": 0})
    check = by_name(health(postgres=busy))["postgres.primary"]
    assert check.status is D and "100% of the pool's 10 connections" in check.reason
    calm = Rtt(1.0, stats={"pool_size": 10, "pool_available": 5})
    assert by_name(health(postgres=calm))["postgres.primary"].status is H


def test_jetstream_checks_each_stream() -> None:
    facts = [
        StreamFacts(name="KV_a", exists=True, replicas=3, current=3, latency_ms=1.0),
        StreamFacts(name="KV_b", exists=True, replicas=3, current=2, latency_ms=1.0),
        StreamFacts(name="KV_c", exists=False),
        StreamFacts(name="EVENTS", exists=True, replicas=1, current=1, latency_ms=80.0),
    ]
    assert isinstance(Js(facts), JetStreamProbe)
    checks = by_name(health(nats=Js(facts)))
    assert checks["nats"].status is H and checks["jetstream"].status is H
    assert checks["jetstream.KV_a"].status is H
    assert checks["jetstream.KV_b"].status is D
    assert checks["jetstream.KV_b"].reason == "only 2 of 3 replicas current"
    assert (
        checks["jetstream.KV_c"].status is U
        and "msstore provision" in checks["jetstream.KV_c"].reason
    )
    assert checks["jetstream.EVENTS"].status is D


def test_an_unreachable_nats_makes_the_relay_unhealthy() -> None:
    report = health(
        nats=Js([], ping=ConnectionFailed("cannot connect to NATS")), outbox=MemoryOutbox()
    )
    checks = by_name(report)
    assert checks["nats"].status is U and "jetstream" not in checks
    assert checks["relay"].status is U and "unreachable" in checks["relay"].reason


def test_relay_check_ages_the_oldest_event() -> None:
    clock = FakeClock(1000.0)
    outbox = MemoryOutbox(clock=clock)
    assert by_name(health(outbox=outbox, clock=clock))["relay"].reason.endswith(
        "(NATS not checked)"
    )
    outbox.add("agents.a.state", {"n": 1})
    clock.advance(0.5)
    assert by_name(health(outbox=outbox, clock=clock))["relay"].status is H
    clock.advance(1.0)
    relay = by_name(health(outbox=outbox, clock=clock))["relay"]
    assert relay.status is D and relay.details["depth"] == 1
    assert relay.details["oldest_age_s"] == pytest.approx(1.5)
    loose = Thresholds(relay_window=10.0)
    assert by_name(health(outbox=outbox, clock=clock, thresholds=loose))["relay"].status is H


def test_queue_check_finds_stuck_leases_and_old_work() -> None:
    clock = FakeClock(1000.0)
    queue = MemoryTaskQueue(clock=clock)
    queue.enqueue("t", {})
    assert by_name(health(queue=queue))["tasks"].status is H
    (_,) = queue.claim("worker", lease=10.0)
    assert queue.stuck() == 0
    clock.advance(11.0)
    assert queue.stuck() == 1
    tasks = by_name(health(queue=queue))["tasks"]
    assert tasks.status is D and "past their lease" in tasks.reason
    assert tasks.details["stuck_leases"] == 1
    (again,) = queue.claim("worker", lease=10.0)  # a claim settles the lapsed lease first
    queue.complete(again)
    assert queue.stuck() == 0
    queue.enqueue("t", {})
    clock.advance(301.0)
    tasks = by_name(health(queue=queue))["tasks"]
    assert tasks.status is D and "oldest pending task waits" in tasks.reason


def test_store_check_reads_the_consistency_monitor_and_refused_rows() -> None:
    with HybridStateManager(MemoryKV(), MemoryTable()) as store:
        store.put("agent.a.state", {"n": 1})
        store.flush()
        check = by_name(health(store=store))["store"]
        assert check.status is H and check.details["refused_rows"] == 0
        assert check.reason.startswith("KV to SQL p95")
