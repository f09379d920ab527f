"""Scrapes of real processes: `msstore metrics serve` on PostgreSQL and NATS, and the demo's
metrics moving while it runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

prometheus_client = pytest.importorskip("prometheus_client", reason="needs msstore[metrics]")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import msstore  # noqa: E402
from msstore.ops.metrics import METRICS  # noqa: E402
from msstore.servers import free_port  # noqa: E402
from msstore.testing import eventually  # noqa: E402
from tests.conftest import migrated_database  # noqa: E402

pytestmark = [pytest.mark.postgres, pytest.mark.nats]


@pytest.fixture(scope="module")
def metrics_dsn(msstore_postgres_dsn: str) -> Iterator[str]:
    with migrated_database(msstore_postgres_dsn, "msstore_metrics") as dsn:
        yield dsn


def scrape(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], family: str, name: str, **labels: str) -> float | None:
    for s in families[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return None


def test_the_exporter_serves_every_metric(
    metrics_dsn: str, msstore_nats_url: str, msstore_unique_name: str
) -> None:
    from msstore.backends.postgres import PostgresTaskQueue

    with PostgresTaskQueue(metrics_dsn) as queue:
        queue.enqueue("t", {})
    kv = msstore.open_kv(f"{msstore_nats_url}/{msstore_unique_name}")
    kv.put("a.k", {"n": 1})
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "msstore", "metrics", "serve", "--port", str(port),
         "--dsn", metrics_dsn, "--nats", msstore_nats_url],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        assert f"http://127.0.0.1:{port}/metrics" in line, line
        families = scrape(f"http://127.0.0.1:{port}/metrics")
        for spec in METRICS:
            assert spec.name.removesuffix("_total") in families, spec.name
        assert sample(families, "msstore_tasks", "msstore_tasks", status="pending") == 1
        assert sample(families, "msstore_outbox_depth", "msstore_outbox_depth") is not None
        stream = f"KV_{msstore_unique_name}"
        messages = "msstore_jetstream_stream_messages"
        assert sample(families, messages, messages, stream=stream) == 1
        status = "msstore_health_status"
        assert sample(families, status, status, check="postgres.primary") == 0
        assert sample(families, status, status, check="nats") == 0
        checks = "msstore_health_checks"
        ran = sample(families, checks, f"{checks}_total", check="tasks", status="HEALTHY")
        assert ran is not None and ran >= 1
    finally:
        kv.close()
        server.send_signal(signal.SIGINT)
        code = server.wait(timeout=30)
        if server.stderr is not None:
            server.stderr.close()
        assert code == 0


def activity(families: dict[str, Any]) -> float:
    """Everything msstore counted so far: every counter and every histogram's count."""
    return sum(
        float(s.value)
        for f in families.values()
        for s in f.samples
        if f.type in ("counter", "histogram") and s.name.endswith(("_total", "_count"))
    )


def test_the_demo_metrics_move_while_it_runs() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    demo = subprocess.Popen(
        [sys.executable, "-m", "msstore", "demo", "--backend", "embedded", "--json",
         "--writes", "200", "--metrics-port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # The endpoint is up before the servers start: the demo is running while it answers.
        first = eventually(
            lambda: activity(scrape(url)), timeout=120, retry_on=(urllib.error.URLError,)
        )
        later = eventually(lambda: (now := activity(scrape(url))) > first and now, timeout=120)
    finally:
        assert demo.wait(timeout=300) == 0
    assert later > first > 0
