"""The outbox relay: ``OutboxRelay`` passes against a hand-written psycopg + nats-py relay, each
publishing a filled outbox to JetStream (the fill is set-up, not timed; the msstore relay is
connected once, the raw one connects in its round, as ``msstore bench relay`` has them). The
rounds are :mod:`msstore.bench.relay`'s; ``msstore bench relay --json`` reports
``relay_ratio``."""

from __future__ import annotations

from typing import Any

import pytest

from msstore.bench.relay import connect, fill, prepare, raw_relay

EVENTS = 2000


@pytest.fixture(scope="module")
def prepared(bench_dsn: str, msstore_nats_url: str) -> tuple[str, str]:
    prepare(bench_dsn, msstore_nats_url)
    return bench_dsn, msstore_nats_url


@pytest.mark.parametrize("relay", ["msstore", "raw"])
def test_relay_an_outbox(benchmark: Any, prepared: tuple[str, str], relay: str) -> None:
    dsn, url = prepared
    benchmark.group = f"outbox relay: {EVENTS} events"
    benchmark.extra_info["events"] = EVENTS
    if relay == "raw":
        benchmark.pedantic(
            raw_relay, args=(dsn, url, EVENTS), setup=lambda: fill(dsn, url, EVENTS), rounds=3
        )
        return
    with connect(dsn, url) as ours:
        published = benchmark.pedantic(ours.drain, setup=lambda: fill(dsn, url, EVENTS), rounds=3)
    assert published == EVENTS
