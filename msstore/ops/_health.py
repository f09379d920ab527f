"""One health report over every tier: what each check measures, how it is classed, and how the
checks add up (the worst status wins; exit status 0 / 1 / 2).

The rules live here; a backend only measures. PostgreSQL answers :class:`PostgresProbe` (a
round trip per pool role, the pool's counters), NATS answers :class:`JetStreamProbe` (a ping,
the JetStream account, each stream's replicas). The dual store, the outbox and the task queue
are read through their own ``stats()``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs

from msstore._internal import telemetry
from msstore.coordination import OutboxSource, relay_health
from msstore.errors import InvalidArgument, MsstoreError
from msstore.records import HealthStatus
from msstore.spi import check_seconds
from msstore.state import HybridStateManager
from msstore.work import TaskQueue

__all__ = [
    "EXIT_CODES",
    "Check",
    "HealthReport",
    "JetStreamProbe",
    "LatencyLimits",
    "PostgresProbe",
    "StreamFacts",
    "Thresholds",
    "classify_latency",
    "health",
]

_ORDER = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}

EXIT_CODES: Mapping[HealthStatus, int] = {
    HealthStatus.HEALTHY: 0,
    HealthStatus.DEGRADED: 1,
    HealthStatus.UNHEALTHY: 2,
}
"""The exit status ``msstore health`` gives for each overall status."""

ROUND_TRIPS = 3
"""Round trips per latency check; the fastest counts (one slow scheduling slice on a busy
machine does not make a server degraded; a slow server is slow every time)."""


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    """A finite number > 0 (of milliseconds for a ``*_ms`` field, else of seconds)."""
    try:
        check_seconds(value, field=attribute.name)
    except InvalidArgument:
        unit = "milliseconds" if attribute.name.endswith("_ms") else "seconds"
        raise InvalidArgument(
            f"{attribute.name} must be a finite number of {unit} > 0, got {value!r}"
        ) from None


@attrs.frozen(kw_only=True)
class LatencyLimits:
    """A round trip under ``degraded_ms`` is healthy; from ``degraded_ms`` it is degraded, and
    from ``unhealthy_ms`` unhealthy (``None``: latency alone never makes it unhealthy)."""

    degraded_ms: float = attrs.field(validator=_positive)
    unhealthy_ms: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_positive)
    )

    def __attrs_post_init__(self) -> None:
        if self.unhealthy_ms is not None and self.unhealthy_ms <= self.degraded_ms:
            raise InvalidArgument(
                f"unhealthy_ms must be greater than degraded_ms ({self.degraded_ms:g}), "
                f"got {self.unhealthy_ms!r}"
            )


def classify_latency(latency_ms: float | None, limits: LatencyLimits) -> HealthStatus:
    """The status of one measured round trip (``None``: it failed: UNHEALTHY)."""
    if latency_ms is None:
        return HealthStatus.UNHEALTHY
    if limits.unhealthy_ms is not None and latency_ms >= limits.unhealthy_ms:
        return HealthStatus.UNHEALTHY
    if latency_ms >= limits.degraded_ms:
        return HealthStatus.DEGRADED
    return HealthStatus.HEALTHY


def _fraction(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:
        raise InvalidArgument(f"{attribute.name} must be a number in (0, 1], got {value!r}")


@attrs.frozen(kw_only=True)
class Thresholds:
    """Where each check turns degraded or unhealthy.

    ``postgres``: ``SELECT 1`` round trip (10 ms / 100 ms). ``jetstream``: a ping and a
    stream-info request (50 ms; failing is unhealthy). ``pool_utilisation``: the share of a
    pool's connections in use past which it is degraded (0.9). ``relay_window``: seconds the
    oldest unpublished event may wait (1). ``pending_task_age``: seconds the oldest pending
    task may wait (300).
    """

    postgres: LatencyLimits = LatencyLimits(degraded_ms=10.0, unhealthy_ms=100.0)
    jetstream: LatencyLimits = LatencyLimits(degraded_ms=50.0)
    pool_utilisation: float = attrs.field(default=0.9, validator=_fraction)
    relay_window: float = attrs.field(default=1.0, validator=_positive)
    pending_task_age: float = attrs.field(default=300.0, validator=_positive)


@attrs.frozen(kw_only=True)
class Check:
    """One check's outcome: its ``status``, the ``latency_ms`` it measured (``None`` when it
    measured none or failed), a one-line ``reason`` and the figures it read (``details``)."""

    name: str
    status: HealthStatus
    reason: str
    latency_ms: float | None = None
    details: Mapping[str, object] = attrs.field(factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The check as JSON-ready data."""
        return {
            "name": self.name,
            "status": self.status.value,
            "latency_ms": self.latency_ms,
            "reason": self.reason,
            "details": dict(self.details),
        }


@attrs.frozen(kw_only=True)
class HealthReport:
    """Every check, and the overall ``status``: the worst of them (HEALTHY when there are
    none)."""

    checks: tuple[Check, ...]
    took_ms: float

    @property
    def status(self) -> HealthStatus:
        """The worst status of any check."""
        return max(
            (c.status for c in self.checks), key=_ORDER.__getitem__, default=HealthStatus.HEALTHY
        )

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 degraded, 2 unhealthy."""
        return EXIT_CODES[self.status]

    def failing(self) -> list[Check]:
        """The checks that are not healthy, worst first."""
        bad = [c for c in self.checks if c.status is not HealthStatus.HEALTHY]
        return sorted(bad, key=lambda c: -_ORDER[c.status])

    def as_dict(self) -> dict[str, object]:
        """The report as JSON-ready data."""
        return {
            "status": self.status.value,
            "took_ms": round(self.took_ms, 3),
            "checks": [c.as_dict() for c in self.checks],
        }

    def lines(self) -> list[str]:
        """One line per check, then the overall status."""
        width = max((len(c.name) for c in self.checks), default=0)
        out = []
        for c in self.checks:
            latency = "" if c.latency_ms is None else f" {c.latency_ms:.1f} ms"
            out.append(f"{c.status.value:<9} {c.name:<{width}}{latency}  {c.reason}")
        out.append(f"overall: {self.status.value}")
        return out


@attrs.frozen(kw_only=True)
class StreamFacts:
    """What JetStream says of one stream (a KV bucket is the stream ``KV_<bucket>``): whether
    it exists, its configured ``replicas`` and how many of them are ``current`` (the leader
    and the replicas caught up), its messages and bytes."""

    name: str
    exists: bool
    replicas: int = 0
    current: int = 0
    messages: int = 0
    bytes: int = 0
    latency_ms: float | None = None


@runtime_checkable
class PostgresProbe(Protocol):
    """What the PostgreSQL checks measure (``Pools`` and ``postgres.HealthProbe`` answer it)."""

    def roles(self) -> Sequence[str]:
        """The pools to check, by role (``primary`` first)."""
        ...

    def round_trip(self, role: str) -> float:
        """Milliseconds of one ``SELECT 1`` on a connection of ``role``'s pool;
        ``ConnectionFailed`` (naming the server and the cause) within the connect timeout when
        none can be had."""
        ...

    def pool_stats(self, role: str) -> Mapping[str, int]:
        """psycopg_pool's counters for ``role`` (empty when it keeps no pool)."""
        ...


@runtime_checkable
class JetStreamProbe(Protocol):
    """What the NATS checks measure (``NatsClient`` answers it)."""

    def ping(self) -> float:
        """Milliseconds of one round trip to the server."""
        ...

    def account(self) -> Mapping[str, int]:
        """The JetStream account's usage: ``memory``, ``storage``, ``streams``, ``consumers``
        (``MsstoreError`` when JetStream is off)."""
        ...

    def streams(
        self, *, buckets: Sequence[str], streams: Sequence[str] | None
    ) -> list[StreamFacts]:
        """Facts of each bucket's stream and each stream (``streams=None``: every stream on the
        server)."""
        ...


def _failed(name: str, err: Exception) -> Check:
    return Check(name=name, status=HealthStatus.UNHEALTHY, reason=" ".join(str(err).split()))


def _fastest(measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(ROUND_TRIPS))


def _postgres_checks(probe: PostgresProbe, limits: Thresholds) -> list[Check]:
    checks = []
    for role in probe.roles():
        name = f"postgres.{role}"
        try:
            latency = _fastest(functools.partial(probe.round_trip, role))
        except MsstoreError as err:
            checks.append(attrs.evolve(_failed(name, err), details=dict(probe.pool_stats(role))))
            continue
        # Read after the round trips: a pool still opening has its connections in hand.
        stats = dict(probe.pool_stats(role))
        status = classify_latency(latency, limits.postgres)
        reason = f"SELECT 1 in {latency:.2f} ms"
        if status is not HealthStatus.HEALTHY:
            limit = limits.postgres.degraded_ms
            reason += f" (healthy under {limit:g} ms)"
        size = stats.get("pool_size", 0)
        if size and status is HealthStatus.HEALTHY:
            used = (size - stats.get("pool_available", 0)) / size
            if used > limits.pool_utilisation:
                status = HealthStatus.DEGRADED
                reason = f"{used:.0%} of the pool's {size} connections in use"
        checks.append(
            Check(name=name, status=status, reason=reason, latency_ms=latency, details=stats)
        )
    return checks


def _jetstream_checks(
    probe: JetStreamProbe,
    limits: Thresholds,
    buckets: Sequence[str],
    streams: Sequence[str] | None,
) -> list[Check]:
    try:
        latency = _fastest(probe.ping)
    except MsstoreError as err:
        return [_failed("nats", err)]
    status = classify_latency(latency, limits.jetstream)
    reason = f"ping in {latency:.2f} ms"
    checks = [Check(name="nats", status=status, reason=reason, latency_ms=latency)]
    try:
        account = dict(probe.account())
        facts = probe.streams(buckets=buckets, streams=streams)
    except MsstoreError as err:
        return [*checks, _failed("jetstream", err)]
    checks.append(
        Check(
            name="jetstream",
            status=HealthStatus.HEALTHY,
            reason=f"{account.get('streams', 0)} stream(s), {account.get('storage', 0)} bytes "
            "stored",
            details=account,
        )
    )
    for fact in facts:
        name = f"jetstream.{fact.name}"
        details: dict[str, object] = {
            "replicas": fact.replicas,
            "current": fact.current,
            "messages": fact.messages,
            "bytes": fact.bytes,
        }
        if not fact.exists:
            checks.append(
                Check(
                    name=name,
                    status=HealthStatus.UNHEALTHY,
                    reason="no such stream: create it with `msstore provision`",
                )
            )
            continue
        status = classify_latency(fact.latency_ms, limits.jetstream)
        reason = f"{fact.current} of {fact.replicas} replica(s) current, {fact.messages} message(s)"
        if fact.current < fact.replicas:
            status = max(status, HealthStatus.DEGRADED, key=_ORDER.__getitem__)
            reason = f"only {fact.current} of {fact.replicas} replicas current"
        checks.append(
            Check(
                name=name, status=status, reason=reason, latency_ms=fact.latency_ms, details=details
            )
        )
    return checks


def _store_check(store: HybridStateManager) -> Check:
    stats = store.stats()
    consistency, flush = stats["consistency"], stats["flush"]
    status = HealthStatus(consistency["status"])
    p95, window = consistency["p95_ms"], consistency["window_ms"]
    pending = consistency["oldest_pending_ms"]
    reason = f"KV to SQL p95 {p95:.0f} ms (window {window:.0f} ms)"
    if pending > window:
        reason += f", oldest pending write {pending / 1000:.3g} s old"
    if flush["failed"] and status is HealthStatus.HEALTHY:
        status = HealthStatus.DEGRADED
        reason = f"{flush['failed']} write(s) refused by the SQL tier (see stats()['flush'])"
    details = {
        "p95_ms": p95,
        "window_ms": window,
        "oldest_pending_ms": pending,
        "pending_keys": flush["pending"],
        "refused_rows": flush["failed"],
    }
    return Check(name="store", status=status, reason=reason, details=details)


def _unreachable(name: str) -> Check:
    return Check(name=name, status=HealthStatus.UNHEALTHY, reason="PostgreSQL unreachable")


def _relay_check(
    outbox: OutboxSource, reachable: bool, limits: Thresholds, clock: Callable[[], float]
) -> Check:
    try:
        stats = outbox.stats()
    except MsstoreError as err:
        return _failed("relay", err)
    age = stats.oldest_age(clock())
    status, reason = relay_health(
        oldest_age=age, reachable=reachable, window=limits.relay_window, failed=stats.failed
    )
    details = {"depth": stats.depth, "oldest_age_s": age, "failed_rows": stats.failed}
    return Check(name="relay", status=status, reason=reason, details=details)


def _queue_check(queue: TaskQueue, limits: Thresholds) -> Check:
    max_age = limits.pending_task_age
    try:
        stats = queue.stats()
        stuck = queue.stuck()
    except MsstoreError as err:
        return _failed("tasks", err)
    age = stats["oldest_pending_age_s"]
    details = {"counts": stats["counts"], "oldest_pending_age_s": age, "stuck_leases": stuck}
    if stuck:
        return Check(
            name="tasks",
            status=HealthStatus.DEGRADED,
            reason=f"{stuck} running task(s) past their lease (their workers stopped)",
            details=details,
        )
    if age > max_age:
        return Check(
            name="tasks",
            status=HealthStatus.DEGRADED,
            reason=f"the oldest pending task waits {age:.0f} s (limit {max_age:g} s)",
            details=details,
        )
    pending = stats["counts"].get("pending", 0)
    return Check(
        name="tasks",
        status=HealthStatus.HEALTHY,
        reason=f"{pending} pending, oldest {age:.1f} s",
        details=details,
    )


def health(
    *,
    postgres: PostgresProbe | None = None,
    nats: JetStreamProbe | None = None,
    buckets: Sequence[str] = (),
    streams: Sequence[str] | None = (),
    store: HybridStateManager | None = None,
    outbox: OutboxSource | None = None,
    queue: TaskQueue | None = None,
    thresholds: Thresholds | None = None,
    clock: Callable[[], float] = time.time,
) -> HealthReport:
    """Check each tier given and compose one report.

    ``postgres``: every pool role (``SELECT 1``, fastest of three, against 10 / 100 ms; pool
    utilisation). ``nats``: a ping, the JetStream account, and each of ``buckets`` and
    ``streams`` (``streams=None``: every stream on the server): present, replicas current.
    ``store``: the dual store's KV-to-SQL lag against its window, the oldest pending write,
    rows the SQL tier refused. ``outbox``: depth and the oldest event's age (unhealthy while
    ``nats`` cannot be reached). ``queue``: running tasks past their lease, the oldest pending.
    A check that cannot reach its server is UNHEALTHY with the cause as its reason; no check
    raises. ``clock``: the Unix time the outbox's event ages are measured against.
    """
    limits = thresholds or Thresholds()
    if not isinstance(limits, Thresholds):
        raise InvalidArgument(f"thresholds must be a Thresholds, got {thresholds!r}")
    if isinstance(buckets, str) or (streams is not None and isinstance(streams, str)):
        raise InvalidArgument("buckets and streams must be sequences of names, not a string")
    start = time.perf_counter()
    checks: list[Check] = []
    if postgres is not None:
        checks += _postgres_checks(postgres, limits)
    reachable = True
    if nats is not None:
        js = _jetstream_checks(nats, limits, buckets, streams)
        reachable = js[0].status is not HealthStatus.UNHEALTHY
        checks += js
    if store is not None:
        checks.append(_store_check(store))
    # The outbox and the task queue live in the primary's database: when it could not be
    # reached (a failed check measured no latency), say so rather than wait out the connect
    # timeout again for each. A slow primary is still asked.
    down = any(c.name == "postgres.primary" and c.latency_ms is None for c in checks)
    if outbox is not None:
        check = _unreachable("relay") if down else _relay_check(outbox, reachable, limits, clock)
        if nats is None and check.status is HealthStatus.HEALTHY:
            check = attrs.evolve(check, reason=check.reason + " (NATS not checked)")
        checks.append(check)
    if queue is not None:
        checks.append(_unreachable("tasks") if down else _queue_check(queue, limits))
    for check in checks:  # the metrics' health success rate (msstore_health_checks_total)
        telemetry.counter("health_checks", check.name, check.status.value).inc()
    return HealthReport(checks=tuple(checks), took_ms=(time.perf_counter() - start) * 1000)
