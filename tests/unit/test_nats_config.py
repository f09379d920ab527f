from __future__ import annotations

import pytest

pytest.importorskip("nats", reason="the NATS backend needs msstore[nats]")

from msstore.backends.nats import NatsConfig, parse_size
from msstore.errors import InvalidArgument


def test_reference_environment_variables() -> None:
    config = NatsConfig.from_env(
        {
            "NATS_SERVERS": "nats://a:4222, nats://b:4222",
            "NATS_CREDS_FILE": "/etc/nats/app.creds",
            "NATS_TLS_CERT": "/tls/cert.pem",
            "NATS_TLS_KEY": "/tls/key.pem",
            "NATS_CA_CERT": "/tls/ca.pem",
            "NATS_KV_PREFIX": "agent_",
            "NATS_KV_TTL_MINUTES": "30",
            "NATS_KV_REPLICAS": "3",
            "NATS_KV_MAX_SIZE": "1GB",
        }
    )
    assert config.servers == ("nats://a:4222", "nats://b:4222")
    assert (config.creds_file, config.tls_cert, config.tls_key, config.ca_cert) == (
        "/etc/nats/app.creds",
        "/tls/cert.pem",
        "/tls/key.pem",
        "/tls/ca.pem",
    )
    assert (
        config.bucket_prefix,
        config.kv_ttl_minutes,
        config.kv_replicas,
        config.kv_max_bytes,
    ) == ("agent_", 30, 3, 1024**3)


def test_keywords_win_over_environment() -> None:
    config = NatsConfig.from_env({"NATS_SERVERS": "nats://a:4222"}, servers="nats://b:1")
    assert config.servers == ("nats://b:1",)
    assert NatsConfig.from_env({}).servers == ("nats://127.0.0.1:4222",)


def test_password_never_in_repr() -> None:
    config = NatsConfig(servers=["nats://app:hunter2@db:4222"])
    assert "hunter2" not in repr(config) and "app:***@db:4222" in repr(config)


@pytest.mark.parametrize(
    "env",
    [
        {"NATS_SERVERS": "http://x"},
        {"NATS_KV_REPLICAS": "three"},
        {"NATS_KV_MAX_SIZE": "lots"},
        {"NATS_KV_TTL_MINUTES": "1.5"},
    ],
)
def test_bad_environment_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument):
        NatsConfig.from_env(env)


def test_bad_keywords_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        NatsConfig(request_timeout=0)
    with pytest.raises(InvalidArgument):
        NatsConfig(servers=[])


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1GB", 1024**3),
        ("512MB", 512 * 1024**2),
        ("100", 100),
        ("64KiB", 65536),
        ("2 g", 2 * 1024**3),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size
