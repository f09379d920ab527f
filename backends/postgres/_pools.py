"""Connection pools per role, their sizes and their health.

Roles: ``primary`` (writes, consistent reads), ``replicas`` (read-only, round-robin, falling
back to the primary), ``background`` (maintenance) and ``analytics`` (reports). Each is a
``psycopg_pool.ConnectionPool`` with production settings unless overridden;
every connection starts with the session settings (``statement_timeout`` 30 s,
``idle_in_transaction_session_timeout`` 60 s, ``application_name``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import attrs
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from msstore.errors import ConnectionFailed, InvalidArgument
from msstore.ops import Thresholds, classify_latency
from msstore.records import HealthStatus
from msstore.registry import redact_url
from msstore.spi import check_bool, check_int, check_many, check_seconds, track

from ._config import check_dsn, dsn_from_env

__all__ = [
    "HEALTHY_MS",
    "UNHEALTHY_MS",
    "Health",
    "HealthProbe",
    "PoolSettings",
    "PoolSizeRecommendation",
    "Pools",
    "latency_status",
    "recommend_pool_size",
]

log = logging.getLogger("msstore.backends.postgres")

HEALTHY_MS: float = Thresholds().postgres.degraded_ms  # SELECT 1 under this is healthy
UNHEALTHY_MS: float = Thresholds().postgres.unhealthy_ms or math.inf  # at or over: unhealthy


@attrs.frozen(kw_only=True)
class PoolSettings:
    """One role's pool: sizes, and timeouts in seconds."""

    min_size: int
    max_size: int
    acquire_timeout: float
    idle_timeout: float
    max_lifetime: float
    check_on_acquire: bool = True

    def __attrs_post_init__(self) -> None:
        check_int(self.min_size, field="min_size", minimum=0)
        check_int(self.max_size, field="max_size", minimum=max(1, self.min_size))
        for name in ("acquire_timeout", "idle_timeout", "max_lifetime"):
            check_seconds(getattr(self, name), field=name)
        check_bool(self.check_on_acquire, field="check_on_acquire")


# Production settings per role.
ROLE_DEFAULTS: Mapping[str, PoolSettings] = {
    "primary": PoolSettings(
        min_size=5, max_size=20, acquire_timeout=30, idle_timeout=600, max_lifetime=3600
    ),
    "replica": PoolSettings(
        min_size=3, max_size=15, acquire_timeout=20, idle_timeout=300, max_lifetime=1800
    ),
    "background": PoolSettings(
        min_size=1,
        max_size=5,
        acquire_timeout=60,
        idle_timeout=1800,
        max_lifetime=7200,
        check_on_acquire=False,
    ),
    "analytics": PoolSettings(
        min_size=2, max_size=10, acquire_timeout=45, idle_timeout=900, max_lifetime=3600
    ),
}

SESSION_DEFAULTS: Mapping[str, str] = {
    "statement_timeout": "30s",
    "idle_in_transaction_session_timeout": "60s",
}

Role = Literal["primary", "background", "analytics"]


@attrs.frozen
class PoolSizeRecommendation:
    """What :func:`recommend_pool_size` suggests: a size, the pool's minimum and maximum,
    and why."""

    recommended_size: int
    min_connections: int
    max_connections: int
    reasoning: str


def recommend_pool_size(
    agent_count: int,
    ops_per_second: float,
    op_duration_s: float,
    *,
    target_utilization: float = 0.8,
) -> PoolSizeRecommendation:
    """A pool size for a workload: Little's law, an agent-concurrency factor, then bounds.

    size = ops/s x duration / utilisation, x 1.0 (<= 5 agents), 0.8 (<= 20) or 0.6 (more),
    clamped to [max(2, agents / 4), min(50, agents x 2)].
    """
    if agent_count < 1 or ops_per_second < 0 or op_duration_s < 0:
        raise InvalidArgument("agent_count must be >= 1 and rates and durations >= 0")
    if not 0 < target_utilization <= 1:
        raise InvalidArgument("target_utilization must be in (0, 1]")
    base = ops_per_second * op_duration_s / target_utilization
    factor = 1.0 if agent_count <= 5 else 0.8 if agent_count <= 20 else 0.6
    low, high = max(2, agent_count / 4), min(50, agent_count * 2)
    size = min(max(base * factor, low), max(high, low))
    recommended = math.ceil(size)
    return PoolSizeRecommendation(
        recommended_size=recommended,
        min_connections=math.ceil(recommended * 0.2),
        max_connections=recommended,
        reasoning=f"Based on {agent_count} agents, {ops_per_second:g} ops/sec",
    )


def latency_status(latency_ms: float | None) -> HealthStatus:
    """HEALTHY under 10 ms, DEGRADED under 100 ms, else (or ``None``) UNHEALTHY."""
    return classify_latency(latency_ms, Thresholds().postgres)


def _timed_select(conn: psycopg.Connection[Any]) -> float:
    try:
        start = time.perf_counter()
        conn.execute("SELECT 1").fetchone()
        latency = (time.perf_counter() - start) * 1000
        conn.rollback()
    except psycopg.Error as err:
        raise ConnectionFailed(f"SELECT 1 failed: {str(err).splitlines()[0]}") from None
    return latency


class HealthProbe:
    """One PostgreSQL server, measured through a connection of its own (what ``msstore
    health --dsn`` checks): opened at the first round trip within ``connect_timeout`` seconds
    (2 or more: libpq's least), closed by :meth:`close`."""

    def __init__(self, dsn: str, *, connect_timeout: int = 5) -> None:
        check_int(connect_timeout, field="connect_timeout", minimum=2, maximum=3600)
        self._dsn = check_dsn(dsn, connect_timeout=connect_timeout)
        self._conn: psycopg.Connection[Any] | None = None

    def __repr__(self) -> str:
        return f"HealthProbe({redact_url(self._dsn)})"

    def roles(self) -> list[str]:
        """Only ``primary``: the server the DSN names."""
        return ["primary"]

    def round_trip(self, role: str) -> float:
        """Milliseconds of one ``SELECT 1``; ``ConnectionFailed`` naming the server and the
        cause when it cannot be reached within the connect timeout."""
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self._dsn)
            except psycopg.Error as err:
                cause = " ".join(str(err).split())
                raise ConnectionFailed(
                    f"cannot connect to PostgreSQL at {redact_url(self._dsn)}: {cause}"
                ) from None
        return _timed_select(self._conn)

    def pool_stats(self, role: str) -> dict[str, int]:
        """Empty: the probe keeps no pool."""
        return {}

    def close(self) -> None:
        """Close the probe's connection."""
        if self._conn is not None:
            self._conn.close()

    def __enter__(self) -> HealthProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@attrs.frozen
class Health:
    """A role pools' health check: the status, the primary's ``SELECT 1`` latency, each pool's
    counters, and the error when it failed."""

    status: HealthStatus
    latency_ms: float | None
    pools: Mapping[str, Mapping[str, int]]
    error: str | None = None


class Pools:
    """The role pools of one database deployment. Thread-safe; close() when done."""

    def __init__(
        self,
        primary: str,
        *,
        replicas: Sequence[str] = (),
        background: str | None = None,
        analytics: str | None = None,
        settings: Mapping[str, PoolSettings] | None = None,
        session: Mapping[str, str] | None = None,
        application_name: str = "msstore",
        open_now: bool = True,
    ) -> None:
        chosen = {**ROLE_DEFAULTS, **(settings or {})}
        unknown = set(settings or {}) - set(ROLE_DEFAULTS)
        if unknown:
            raise InvalidArgument(
                f"unknown pool role(s) {sorted(unknown)}; roles: {sorted(ROLE_DEFAULTS)}"
            )
        for role, given in (settings or {}).items():
            if not isinstance(given, PoolSettings):
                raise InvalidArgument(
                    f"settings[{role!r}] must be a PoolSettings, got {given!r}",
                    hint="PoolSettings(min_size=..., max_size=..., acquire_timeout=...)",
                )
        self._session = {**SESSION_DEFAULTS, **(session or {})}
        self._dsns = {
            "primary": primary,
            "background": background or primary,
            "analytics": analytics or primary,
        }
        self._pools: dict[str, ConnectionPool[Any]] = {}
        for role in ("primary", "background", "analytics"):
            self._pools[role] = self._make(
                role, self._dsns[role], chosen[role], f"{application_name}-{role}", open_now
            )
        self._replicas = [
            self._make(
                f"replica{i}", dsn, chosen["replica"], f"{application_name}-replica{i}", open_now
            )
            for i, dsn in enumerate(check_many(replicas, field="replicas", of="DSNs"))
        ]
        self._next = itertools.count()
        self._lock = threading.Lock()
        track("pools", self)  # the metrics read get_stats() while the pools live
        if open_now:
            self.open(wait=False)

    def _make(
        self, name: str, dsn: str, s: PoolSettings, app: str, open_now: bool
    ) -> ConnectionPool[Any]:
        session = self._session

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.autocommit = True
            for key, value in session.items():
                conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(key), sql.Literal(value)))
            conn.autocommit = False

        return ConnectionPool(
            check_dsn(dsn),
            name=name,
            min_size=s.min_size,
            max_size=s.max_size,
            timeout=s.acquire_timeout,
            max_idle=s.idle_timeout,
            max_lifetime=s.max_lifetime,
            check=ConnectionPool.check_connection if s.check_on_acquire else None,
            configure=configure,
            kwargs={"application_name": app},
            open=False,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Pools:
        """Primary pool from the ``PG_*`` variables; ``PG_MIN_CONNECTIONS`` and
        ``PG_MAX_CONNECTIONS`` size it, ``PG_APP_NAME`` names it."""
        env = os.environ if environ is None else environ
        primary = ROLE_DEFAULTS["primary"]
        try:
            low = int(env.get("PG_MIN_CONNECTIONS", primary.min_size))
            high = int(env.get("PG_MAX_CONNECTIONS", primary.max_size))
        except ValueError:
            raise InvalidArgument(
                "PG_MIN_CONNECTIONS and PG_MAX_CONNECTIONS must be whole numbers"
            ) from None
        settings = {
            "primary": attrs.evolve(primary, min_size=low, max_size=high),
            **kwargs.pop("settings", {}),
        }
        return cls(
            dsn_from_env(env),
            settings=settings,
            application_name=env.get("PG_APP_NAME", "msstore"),
            **kwargs,
        )

    def open(self, *, wait: bool = True, timeout: float = 30.0) -> Pools:
        """Open every pool; with ``wait``, until each has its minimum connections
        (``ConnectionFailed`` naming the server after ``timeout`` seconds). Returns the pools."""
        for pool in self.all():
            try:
                pool.open(wait=wait, timeout=timeout)
            except PoolTimeout as err:
                raise ConnectionFailed(
                    f"pool {pool.name} could not reach PostgreSQL at "
                    f"{redact_url(str(pool.conninfo))}: {err}"
                ) from None
        return self

    def all(self) -> list[ConnectionPool[Any]]:
        """Every pool: the roles', then the replicas'."""
        return [*self._pools.values(), *self._replicas]

    def __repr__(self) -> str:
        replicas = ", ".join(redact_url(str(p.conninfo)) for p in self._replicas)
        return f"Pools(primary={redact_url(self._dsns['primary'])}, replicas=[{replicas}])"

    def pool(self, role: Role = "primary") -> ConnectionPool[Any]:
        """The pool of ``role`` (``primary``, ``background`` or ``analytics``), opened if closed."""
        if role not in self._pools:
            raise InvalidArgument(f"unknown pool role {role!r}; roles: {sorted(self._pools)}")
        pool = self._pools[role]
        if pool.closed:
            pool.open(wait=False)
        return pool

    @contextlib.contextmanager
    def connection(self, role: Role = "primary") -> Iterator[psycopg.Connection[Any]]:
        """A connection from ``role``'s pool, in a ``with`` block (``ConnectionFailed`` when none
        frees up within the acquire timeout)."""
        try:
            with self.pool(role).connection() as conn:
                yield conn
        except PoolTimeout as err:
            raise ConnectionFailed(
                f"no {role} connection within the acquire timeout: {err}",
                hint="raise the pool's max_size or acquire_timeout",
            ) from None

    @contextlib.contextmanager
    def reader(self, *, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A read connection: replicas in turn, the primary when none answers."""
        order = list(self._replicas)
        if order:
            with self._lock:
                start = next(self._next) % len(order)
            order = order[start:] + order[:start]
        for pool in order:
            if pool.closed:
                pool.open(wait=False)
            try:
                conn = pool.getconn(timeout=timeout or pool.timeout)
            except PoolTimeout:
                log.warning("replica pool %s did not answer; trying the next", pool.name)
                continue
            try:
                yield conn
                return
            finally:
                pool.putconn(conn)
        with self.connection("primary") as conn:
            yield conn

    def get_stats(self) -> dict[str, dict[str, int]]:
        """psycopg_pool's counters and gauges per pool (``pool_size``, ``pool_available``,
        ``requests_waiting``, ``requests_num``, ``connections_num`` ...)."""
        return {pool.name: dict(pool.get_stats()) for pool in self.all()}

    def health(self) -> Health:
        """``SELECT 1`` on the primary, timed and classed (10 ms / 100 ms), with pool stats."""
        stats = self.get_stats()
        try:
            latency = self.round_trip("primary")
        except ConnectionFailed as err:
            return Health(HealthStatus.UNHEALTHY, None, stats, str(err).splitlines()[0])
        return Health(latency_status(latency), round(latency, 3), stats)

    def roles(self) -> list[str]:
        """The pools a health check measures: the roles with a server of their own, then the
        replicas (``msstore.ops.health`` calls this)."""
        own = [r for r in self._pools if r == "primary" or self._dsns[r] != self._dsns["primary"]]
        return [*own, *(p.name for p in self._replicas)]

    def _named(self, role: str) -> ConnectionPool[Any]:
        for pool in self._replicas:
            if pool.name == role:
                return pool
        return self.pool(role)  # type: ignore[arg-type]

    def round_trip(self, role: str) -> float:
        """Milliseconds of one ``SELECT 1`` on a connection of ``role``'s pool (a replica by its
        name, ``replica0`` ...); ``ConnectionFailed`` naming the server when no connection comes
        within the pool's acquire timeout."""
        pool = self._named(role)
        if pool.closed:
            pool.open(wait=False)
        try:
            conn = pool.getconn()
        except PoolTimeout as err:
            raise ConnectionFailed(
                f"no connection to PostgreSQL at {redact_url(str(pool.conninfo))} for pool "
                f"{pool.name} within its acquire timeout: {err}"
            ) from None
        try:
            return _timed_select(conn)
        finally:
            pool.putconn(conn)

    def pool_stats(self, role: str) -> dict[str, int]:
        """psycopg_pool's counters for ``role``'s pool."""
        return dict(self._named(role).get_stats())

    def close(self) -> None:
        """Close every pool."""
        for pool in self.all():
            pool.close()

    def __enter__(self) -> Pools:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
