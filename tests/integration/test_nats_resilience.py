"""The NATS store across a server restart and a cluster node failure, on real servers."""

from __future__ import annotations

import logging
import threading

import pytest

from msstore.backends.nats import NatsClient, NatsConfig, NatsKV
from msstore.buckets import BucketConfig
from msstore.errors import ConnectionFailed, DeadlineExceeded, OutcomeUnknown
from msstore.servers import EmbeddedNats, EmbeddedNatsCluster
from msstore.testing import eventually

pytestmark = [pytest.mark.nats, pytest.mark.slow]


def test_store_carries_on_across_a_server_restart(caplog: pytest.LogCaptureFixture) -> None:
    with EmbeddedNats() as server:
        server.start()
        client = NatsClient(NatsConfig(servers=[server.url], request_timeout=8))
        kv = NatsKV.open(client, BucketConfig(name="RESTART", history=2))
        before = {f"k{i}": kv.put(f"k{i}", {"i": i}) for i in range(20)}
        with caplog.at_level(logging.INFO, logger="msstore.backends.nats"):
            server.stop()
            restarter = threading.Timer(1.0, server.start)  # same port, same store dir
            restarter.start()
            # Issued while the server is down: nats-py holds it and sends it after reconnecting.
            rev = kv.put("during", "outage")
            restarter.join()
        assert rev > max(before.values())
        for key, revision in before.items():
            entry = kv.get(key)
            assert entry is not None and entry.revision == revision
        entry = kv.get("during")
        assert entry is not None and entry.value == "outage"
        assert "NATS disconnected" in caplog.text and "NATS reconnected" in caplog.text
        kv.close()
        client.close()


def _leader(client: NatsClient, stream: str) -> str:
    info = client.run(lambda c: c.js.stream_info(stream), write=False, what="leader")
    assert info.cluster is not None
    return str(info.cluster.leader)


def test_r3_bucket_survives_losing_its_leader_mid_stream() -> None:
    with EmbeddedNatsCluster() as cluster:
        cluster.start()
        client = NatsClient(NatsConfig(servers=cluster.urls, request_timeout=3))
        kv = NatsKV.open(client, BucketConfig(name="FAILOVER", replicas=3, history=1))
        acked: dict[str, int] = {}
        failures: list[str] = []
        after_stop = 0
        stopped = threading.Event()

        def writer() -> None:
            nonlocal after_stop
            for i in range(600):
                key = f"k{i % 40}"

                def put(key: str = key, i: int = i) -> bool:
                    try:
                        kv.put(key, i)
                    except (ConnectionFailed, DeadlineExceeded, OutcomeUnknown) as err:
                        failures.append(type(err).__name__)
                        return False
                    return True

                eventually(put, timeout=30, interval=0.1, what=f"writing {key}")
                acked[key] = i
                if stopped.is_set():
                    after_stop += 1

        thread = threading.Thread(target=writer)
        thread.start()
        eventually(lambda: len(acked) >= 40, what="40 writes before the failover")
        leader = _leader(client, "KV_FAILOVER")
        node = next(n for n in cluster.nodes if leader in " ".join(n.extra_args))
        node.stop()
        stopped.set()
        thread.join(120)
        assert not thread.is_alive()
        assert after_stop > 100  # writes resumed on the remaining two nodes
        assert _leader(client, "KV_FAILOVER") != leader
        for key, value in acked.items():
            entry = kv.get(key)
            assert entry is not None and entry.value == value, key
        node.start()
        kv.close()
        client.close()


def test_bucket_lists_every_acknowledged_key_after_failover() -> None:
    with EmbeddedNatsCluster() as cluster:
        cluster.start()
        client = NatsClient(NatsConfig(servers=cluster.urls, request_timeout=3))
        kv = NatsKV.open(client, BucketConfig(name="LIST", replicas=3))
        kv.put_many({f"agent.a{i}.state": i for i in range(100)})
        cluster.nodes[0].stop()
        keys = eventually(
            lambda: kv.keys("agent.*.state"),
            timeout=30,
            interval=0.2,
            what="the bucket's keys after the failover",
            retry_on=(ConnectionFailed, DeadlineExceeded, OutcomeUnknown),
        )
        assert len(keys) == 100
        kv.close()
        client.close()
