"""The Prometheus metrics on the in-memory backends: names by Prometheus' rules, every listed
metric in a scrape, values that move with the work, and the switch that stops recording."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

prometheus_client = pytest.importorskip("prometheus_client", reason="needs msstore[metrics]")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from msstore.backends.memory import (  # noqa: E402
    MemoryEventStream,
    MemoryKV,
    MemoryOutbox,
    MemorySagaLog,
    MemoryTable,
    MemoryTaskQueue,
)
from msstore.coordination import FunctionStep, OutboxRelay, Saga, SagaRunner  # noqa: E402
from msstore.errors import InvalidArgument, VersionConflict  # noqa: E402
from msstore.ops import health, metrics  # noqa: E402
from msstore.state import HybridStateManager  # noqa: E402

DOCS = Path(__file__).parents[2] / "docs" / "guide" / "operations.md"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def family_name(name: str) -> str:
    return name.removesuffix("_total")


def scrape(registry: CollectorRegistry) -> tuple[dict[str, Any], Samples]:
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    return families, samples


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    reg = CollectorRegistry(auto_describe=False)
    metrics.register(reg)
    metrics.enable()
    yield reg
    metrics.enable()


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_names_follow_prometheus_rules() -> None:
    names = [m.name for m in metrics.METRICS]
    assert len(names) == len(set(names))
    for m in metrics.METRICS:
        assert re.fullmatch(r"msstore_[a-z0-9_]+", m.name), m.name
        assert m.name.endswith("_total") == (m.kind == "counter"), m.name
        if re.search(r"_(duration|lag|age|wait)(_|$)", m.name):
            assert m.name.removesuffix("_total").endswith("_seconds"), m.name
        assert not {"key", "agent", "agent_id", "task_id", "saga_id"} & set(m.labels), m.name
        assert m.help and m.help[0].isupper() and m.help.endswith((".", ")")), m.name


def test_every_metric_is_in_a_scrape(registry: CollectorRegistry) -> None:
    families, _ = scrape(registry)
    for m in metrics.METRICS:
        assert family_name(m.name) in families, m.name
        assert families[family_name(m.name)].type == m.kind


def test_values_move_with_the_work(registry: CollectorRegistry) -> None:
    _, before = scrape(registry)
    queue = MemoryTaskQueue()
    with HybridStateManager(MemoryKV(), MemoryTable()) as store:
        store.put("agent.a.state", {"n": 1})
        revision = store.put("agent.a.state", {"n": 2})
        with pytest.raises(VersionConflict):
            store.update("agent.a.state", {"n": 3}, expected_revision=revision - 1)
        store.get("agent.a.state")
        store.flush()
        queue.enqueue("t", {})
        (claim,) = queue.claim("w")
        queue.complete(claim)
        queue.enqueue("t", {})
        outbox = MemoryOutbox()
        relay = OutboxRelay(outbox, MemoryEventStream({"S": ["agents.>"]}))
        outbox.add("agents.a.state", {"n": 2})
        relay.run_once()
        outbox.add("agents.a.state", {"n": 3})
        SagaRunner(MemorySagaLog()).run(Saga("s", [FunctionStep("f", lambda given: {})]))
        health(queue=queue)
        _, after = scrape(registry)
        # Gauges read live components when scraped: these, not other tests' still alive.
        own = CollectorRegistry(auto_describe=False)
        metrics.register(own, stores=[store], queue=queue, outbox=outbox)
        _, gauges = scrape(own)

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("msstore_kv_operation_duration_seconds_count", operation="put") == 2
        assert moved("msstore_kv_operation_duration_seconds_count", operation="get") == 1
        assert moved("msstore_conflicts_total", operation="update") == 1
        assert moved("msstore_flush_duration_seconds_count") >= 1
        assert moved("msstore_flush_rows_total", outcome="written") >= 1
        assert moved("msstore_flush_lag_seconds_count") >= 1
        assert moved("msstore_cache_lookups_total", tier="l1", result="hit") == 1
        assert moved("msstore_task_duration_seconds_count", status="completed") == 1
        assert moved("msstore_outbox_events_total", outcome="published") == 1
        assert moved("msstore_sagas_total", status="completed") == 1
        assert moved("msstore_health_checks_total", check="tasks", status="HEALTHY") == 1
        assert value(gauges, "msstore_tasks", status="pending") == 1
        assert value(gauges, "msstore_tasks", status="completed") == 1
        assert value(gauges, "msstore_outbox_depth") == 1
        assert value(gauges, "msstore_flush_pending_keys") == 0
        store.put("agent.b.state", 1)  # not flushed yet (threshold 50)
        _, gauges = scrape(own)
        assert value(gauges, "msstore_flush_pending_keys") == 1
        del relay, queue


def test_disable_stops_recording_and_enable_resumes(registry: CollectorRegistry) -> None:
    with HybridStateManager(MemoryKV(), MemoryTable()) as store:
        _, before = scrape(registry)
        metrics.disable()
        assert not metrics.enabled()
        store.put("agent.a.state", 1)
        _, during = scrape(registry)
        metrics.enable()
        store.put("agent.a.state", 2)
        _, after = scrape(registry)
    name = "msstore_kv_operation_duration_seconds_count"
    assert value(during, name, operation="put") == value(before, name, operation="put")
    assert value(after, name, operation="put") == value(before, name, operation="put") + 1


def test_serve_answers_a_scrape() -> None:
    with metrics.serve(0) as server, urllib.request.urlopen(server.url, timeout=10) as reply:
        text = reply.read().decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {family_name(m.name) for m in metrics.METRICS} <= names
    with pytest.raises(InvalidArgument, match="port"):
        metrics.serve(70000)


def test_the_docs_table_lists_every_metric() -> None:
    rows = re.findall(r"^\| `(msstore_[a-z0-9_]+)` \| (\w+) \|", DOCS.read_text(), re.MULTILINE)
    assert [(name, kind) for name, kind in rows] == [(m.name, m.kind) for m in metrics.METRICS]
