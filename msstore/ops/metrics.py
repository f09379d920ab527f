"""Prometheus metrics: msstore's own counters and histograms, the figures of the live stores,
queues, relays and pools, and (for a standalone exporter) the servers' own.

Needs the ``metrics`` extra (``prometheus-client``), imported only when metrics are collected or
served. Names follow Prometheus' rules: one ``msstore_`` prefix, base units (seconds, bytes),
``_total`` on counters, and bounded labels (operation, tier, status, pool, stream; never a key,
an agent or a task id). :data:`METRICS` lists every metric; the docs' table is checked against
it.

In a program::

    from msstore.ops import metrics

    metrics.serve(9464)  # http://127.0.0.1:9464/metrics, on a daemon thread

or ``metrics.register()`` to add msstore's collector to ``prometheus_client``'s default
registry (served by whatever already serves it). ``msstore metrics serve`` runs a standalone
exporter that reads the outbox, the task queue, the health checks and JetStream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from msstore._internal import telemetry
from msstore.errors import MsstoreError, Unsupported
from msstore.ops import EXIT_CODES
from msstore.spi import check_int

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from msstore.coordination import OutboxSource
    from msstore.ops import HealthReport, JetStreamProbe
    from msstore.state import HybridStateManager
    from msstore.work import TaskQueue

__all__ = [
    "METRICS",
    "MetricSpec",
    "MetricsServer",
    "MsstoreCollector",
    "disable",
    "enable",
    "enabled",
    "register",
    "serve",
]

log = logging.getLogger("msstore.ops.metrics")

Kind = Literal["counter", "gauge", "histogram"]


@attrs.frozen
class MetricSpec:
    """One metric: its full ``name`` (counters end in ``_total``), ``kind``, ``labels`` and
    ``help``; ``recorded`` names msstore's own counter or histogram behind it (``None``: read
    from a component or a server when scraped)."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    recorded: str | None = None


def _rec(name: str, kind: Kind, labels: tuple[str, ...], text: str) -> MetricSpec:
    base = name.removeprefix("msstore_").removesuffix("_total")
    return MetricSpec(name, kind, labels, text, base)


METRICS: Final[tuple[MetricSpec, ...]] = (
    _rec(
        "msstore_kv_operation_duration_seconds", "histogram", ("operation",),
        "Dual-store calls (put, put_many, update, update_with, delete, get, get_many), from "
        "call to acknowledgement.",
    ),
    _rec(
        "msstore_conflicts_total", "counter", ("operation",),
        "Compare-and-set conflicts: updates refused (update) and attempts retried "
        "(update_with).",
    ),
    _rec(
        "msstore_flush_duration_seconds", "histogram", (),
        "Time to write one flush batch to PostgreSQL; its count is the number of batches.",
    ),
    _rec("msstore_flush_batch_rows", "histogram", (), "Rows per flush batch."),
    _rec(
        "msstore_flush_lag_seconds", "histogram", (),
        "Per write, from the KV acknowledgement to the SQL commit.",
    ),
    _rec(
        "msstore_flush_rows_total", "counter", ("outcome",),
        "Rows flushed: written, skipped (SQL held a newer version), removed (deletes), refused "
        "(set aside for good).",
    ),
    _rec("msstore_flush_retries_total", "counter", (), "Flush batches retried after a failure."),
    MetricSpec(
        "msstore_flush_pending_keys", "gauge", (), "Keys written to KV and not yet in SQL."
    ),
    MetricSpec(
        "msstore_flush_oldest_pending_seconds", "gauge", (),
        "Age of the oldest write not yet in SQL (0 when none).",
    ),
    _rec(
        "msstore_cache_lookups_total", "counter", ("tier", "result"),
        "Reads by tier (l1, kv, sql) and result (hit, miss).",
    ),
    _rec(
        "msstore_outbox_events_total", "counter", ("outcome",),
        "Outbox events relayed by this process: published, duplicates (already in the stream), "
        "failed (set aside), retried (left for the next pass).",
    ),
    MetricSpec("msstore_outbox_depth", "gauge", (), "Outbox events waiting to be published."),
    MetricSpec(
        "msstore_outbox_oldest_age_seconds", "gauge", (),
        "Age of the oldest waiting outbox event (0 when none).",
    ),
    MetricSpec("msstore_outbox_failed_rows", "gauge", (), "Outbox events set aside as failed."),
    MetricSpec("msstore_tasks", "gauge", ("status",), "Tasks by status."),
    MetricSpec(
        "msstore_task_oldest_pending_seconds", "gauge", (),
        "Age of the oldest pending task (0 when none).",
    ),
    MetricSpec(
        "msstore_task_stuck_leases", "gauge", (),
        "Running tasks past their lease (their workers stopped).",
    ),
    _rec(
        "msstore_task_duration_seconds", "histogram", ("status",),
        "Task attempts from claim to settlement, by the status they left the task in "
        "(completed, pending: to be retried, failed).",
    ),
    _rec(
        "msstore_sagas_total", "counter", ("status",),
        "Sagas this process ended: completed, rolled_back, compensation_failed.",
    ),
    MetricSpec("msstore_pool_size", "gauge", ("pool",), "Connections a PostgreSQL pool holds."),
    MetricSpec(
        "msstore_pool_available", "gauge", ("pool",), "Idle connections in a PostgreSQL pool."
    ),
    MetricSpec(
        "msstore_pool_requests_waiting", "gauge", ("pool",),
        "Requests waiting for a connection of a PostgreSQL pool.",
    ),
    MetricSpec(
        "msstore_pool_requests_total", "counter", ("pool",),
        "Connections asked of a PostgreSQL pool.",
    ),
    MetricSpec(
        "msstore_pool_request_wait_seconds_total", "counter", ("pool",),
        "Time requests waited for a connection of a PostgreSQL pool.",
    ),
    MetricSpec(
        "msstore_pool_connection_errors_total", "counter", ("pool",),
        "Failed connection attempts of a PostgreSQL pool.",
    ),
    _rec(
        "msstore_health_checks_total", "counter", ("check", "status"),
        "Health checks run, by check and the status they found.",
    ),
    MetricSpec(
        "msstore_health_status", "gauge", ("check",),
        "Each check's last status: 0 healthy, 1 degraded, 2 unhealthy (exporter).",
    ),
    MetricSpec(
        "msstore_jetstream_stream_messages", "gauge", ("stream",),
        "Messages in a JetStream stream or KV bucket (exporter).",
    ),
    MetricSpec(
        "msstore_jetstream_stream_bytes", "gauge", ("stream",),
        "Bytes in a JetStream stream or KV bucket (exporter).",
    ),
)  # fmt: skip
"""Every metric msstore exports, in the order a scrape lists them."""


def enabled() -> bool:
    """Whether msstore records its counters and histograms (on by default)."""
    return telemetry.enabled()


def enable() -> None:
    """Record again after :func:`disable`."""
    telemetry.enable()


def disable() -> None:
    """Stop recording (each record is then one attribute read); gauges still read live figures
    when scraped."""
    telemetry.disable()


def _prometheus() -> Any:
    try:
        from prometheus_client import core  # noqa: PLC0415
    except ImportError:
        raise Unsupported(
            "metrics need prometheus-client", hint="pip install 'msstore[metrics]'"
        ) from None
    return core


class MsstoreCollector:
    """A ``prometheus_client`` collector of every metric in :data:`METRICS`.

    It reads msstore's own records, every live dual store, task queue, relay and pool set of
    the process (or only the ``stores``, ``outbox`` and ``queue`` given), and, when given, JetStream
    (``nats``: stream sizes) and a ``health`` function run at each scrape (an exporter's
    view). Figures that cannot be read are left out of that scrape (logged at DEBUG).
    """

    def __init__(
        self,
        *,
        stores: Sequence[HybridStateManager] | None = None,
        outbox: OutboxSource | None = None,
        queue: TaskQueue | None = None,
        nats: JetStreamProbe | None = None,
        health: Callable[[], HealthReport] | None = None,
    ) -> None:
        _prometheus()
        self._stores = None if stores is None else list(stores)
        self._outbox, self._queue, self._nats, self._health = outbox, queue, nats, health

    def describe(self) -> list[Any]:
        """Nothing up front: the families are made at each scrape."""
        return []

    def collect(self) -> Iterator[Any]:
        """Every family in :data:`METRICS`, with the samples this scrape could read."""
        core = _prometheus()
        values = self._gauges()
        for spec in METRICS:
            yield self._family(core, spec, values.get(spec.name, {}))

    def _family(self, core: Any, spec: MetricSpec, values: Mapping[tuple[str, ...], float]) -> Any:
        labels = list(spec.labels)
        if spec.kind == "histogram":
            family = core.HistogramMetricFamily(spec.name, spec.help, labels=labels)
            assert spec.recorded is not None
            for label_values, hist in sorted(telemetry.histograms(spec.recorded)):
                buckets, _, total = hist.snapshot()
                family.add_metric(
                    list(label_values),
                    [(_le(bound), float(n)) for bound, n in buckets],
                    total,
                )
            return family
        if spec.kind == "counter":
            family = core.CounterMetricFamily(
                spec.name.removesuffix("_total"), spec.help, labels=labels
            )
            recorded: Iterable[tuple[tuple[str, ...], float]] = (
                ((lv, c.value) for lv, c in sorted(telemetry.counters(spec.recorded)))
                if spec.recorded is not None
                else sorted(values.items())
            )
            for label_values, value in recorded:
                family.add_metric(list(label_values), value)
            return family
        family = core.GaugeMetricFamily(spec.name, spec.help, labels=labels)
        for label_values, value in sorted(values.items()):
            family.add_metric(list(label_values), value)
        return family

    def _gauges(self) -> dict[str, dict[tuple[str, ...], float]]:
        out: dict[str, dict[tuple[str, ...], float]] = {}

        def put(name: str, value: float, *labels: str) -> None:
            bucket = out.setdefault(name, {})
            bucket[labels] = bucket.get(labels, 0.0) + value

        _read(self._flushing, put)
        _read(self._queues, put)
        _read(self._outboxes, put)
        _read(_pools, put)
        if self._nats is not None:
            _read(self._streams, put)
        if self._health is not None:
            _read(self._checks, put)
        return out

    def _flushing(self, put: _Put) -> None:
        oldest = 0.0
        stores = telemetry.tracked("store") if self._stores is None else self._stores
        for store in stores:
            stats = store.stats()  # type: ignore[attr-defined]
            put("msstore_flush_pending_keys", stats["flush"]["pending"])
            oldest = max(oldest, stats["consistency"]["oldest_pending_ms"] / 1000)
        put("msstore_flush_oldest_pending_seconds", oldest)

    def _queues(self, put: _Put) -> None:
        queues = [self._queue] if self._queue is not None else telemetry.tracked("queue")
        for queue in queues:
            stats = queue.stats()  # type: ignore[attr-defined]
            for status, n in stats["counts"].items():
                put("msstore_tasks", n, status)
            put("msstore_task_oldest_pending_seconds", stats["oldest_pending_age_s"])
            put("msstore_task_stuck_leases", queue.stuck())  # type: ignore[attr-defined]

    def _outboxes(self, put: _Put) -> None:
        sources: list[Any] = (
            [self._outbox]
            if self._outbox is not None
            else list({id(r.source): r.source for r in telemetry.tracked("relay")}.values())  # type: ignore[attr-defined]
        )
        for source in sources:
            stats = source.stats()
            put("msstore_outbox_depth", stats.depth)
            put("msstore_outbox_failed_rows", stats.failed)
            put("msstore_outbox_oldest_age_seconds", stats.oldest_age(time.time()) or 0.0)

    def _streams(self, put: _Put) -> None:
        assert self._nats is not None
        for fact in self._nats.streams(buckets=(), streams=None):
            put("msstore_jetstream_stream_messages", fact.messages, fact.name)
            put("msstore_jetstream_stream_bytes", fact.bytes, fact.name)

    def _checks(self, put: _Put) -> None:
        assert self._health is not None
        for check in self._health().checks:
            put("msstore_health_status", EXIT_CODES[check.status], check.name)


_Put = Callable[..., None]


def _read(fn: Callable[[_Put], None], put: _Put) -> None:
    try:
        fn(put)
    except MsstoreError as err:
        log.debug("metrics: a figure was not read: %s", err)


_POOL_FIGURES: Final = (
    ("msstore_pool_size", "pool_size", 1.0),
    ("msstore_pool_available", "pool_available", 1.0),
    ("msstore_pool_requests_waiting", "requests_waiting", 1.0),
    ("msstore_pool_requests_total", "requests_num", 1.0),
    ("msstore_pool_request_wait_seconds_total", "requests_wait_ms", 0.001),
    ("msstore_pool_connection_errors_total", "connections_errors", 1.0),
)


def _pools(put: _Put) -> None:
    for pools in telemetry.tracked("pools"):
        for name, stats in pools.get_stats().items():  # type: ignore[attr-defined]
            for metric, key, scale in _POOL_FIGURES:
                put(metric, stats.get(key, 0) * scale, name)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def register(registry: CollectorRegistry | None = None, **sources: Any) -> MsstoreCollector:
    """Add a :class:`MsstoreCollector` (``sources``: its keyword arguments) to ``registry``
    (default: ``prometheus_client``'s), and return it."""
    core = _prometheus()
    collector = MsstoreCollector(**sources)
    (registry or core.REGISTRY).register(collector)
    return collector


class MetricsServer:
    """A running ``/metrics`` endpoint: its ``url``; :meth:`close` (or a ``with`` block) stops
    it and frees the port."""

    def __init__(self, server: Any, addr: str) -> None:
        self._server = server
        self.port: int = server.server_address[1]
        self.url = f"http://{addr}:{self.port}/metrics"

    def __repr__(self) -> str:
        return f"MetricsServer({self.url})"

    def close(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    port: int, *, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None, **sources: Any
) -> MetricsServer:
    """Serve ``/metrics`` on ``addr:port`` (0: a free port) from a daemon thread: msstore's
    collector (with ``sources``) in a registry of its own unless ``registry`` is given."""
    check_int(port, field="port", minimum=0, maximum=65535)
    _prometheus()  # Unsupported, naming the extra, when prometheus-client is missing
    from prometheus_client import CollectorRegistry, start_http_server  # noqa: PLC0415

    chosen = registry if registry is not None else CollectorRegistry(auto_describe=False)
    chosen.register(MsstoreCollector(**sources))
    server, _ = start_http_server(port, addr=addr, registry=chosen)
    return MetricsServer(server, addr)
