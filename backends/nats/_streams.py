"""A KV bucket's JetStream stream: the settings msstore creates it with, and how an existing
stream differs from the bucket a caller asked for (opening and provisioning both use these)."""

from __future__ import annotations

import asyncio
from typing import Any

from nats.js import api

from msstore.buckets import BucketConfig

from ._client import NatsClient

__all__ = ["compare", "stream_config", "wait_for_leader"]


async def wait_for_leader(js: Any, stream: str, timeout: float) -> Any:
    """A new replicated stream answers only once its group has elected a leader."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await js.stream_info(stream)
        if (info.cluster and info.cluster.leader) or asyncio.get_running_loop().time() > deadline:
            return info
        await asyncio.sleep(0.05)


def stream_config(config: BucketConfig, client: NatsClient) -> api.StreamConfig:
    """The JetStream stream behind a KV bucket, as nats-server's own KV buckets are made."""
    ttl = config.ttl
    duplicate_window = float(min(120, ttl)) if ttl else 120.0
    extra: dict[str, Any] = {}
    if config.per_key_ttl and client.supports_per_key_ttl:
        extra["allow_msg_ttl"] = True
    if config.compression and client.server_version[:2] >= (2, 10):
        extra["compression"] = api.StoreCompression.S2
    return api.StreamConfig(
        name=f"KV_{config.name}",
        subjects=[f"$KV.{config.name}.>"],
        allow_direct=True,
        allow_rollup_hdrs=True,
        deny_delete=True,
        discard=api.DiscardPolicy.NEW,
        duplicate_window=duplicate_window,
        max_age=float(ttl) if ttl else None,
        max_msg_size=config.max_value_bytes,
        max_msgs=-1,
        max_msgs_per_subject=config.history,
        max_consumers=-1,
        num_replicas=config.replicas,
        storage=api.StorageType.MEMORY if config.storage == "memory" else api.StorageType.FILE,
        **extra,
    )


def compare(config: BucketConfig, actual: api.StreamConfig) -> list[str]:
    """Human-readable differences between the wanted bucket and the server's stream."""
    diffs = []
    want_ttl = float(config.ttl) if config.ttl else 0.0
    if (actual.max_age or 0.0) != want_ttl:
        diffs.append(f"ttl {actual.max_age or None} (wanted {config.ttl})")
    if (actual.max_msgs_per_subject or 1) != config.history:
        diffs.append(f"history {actual.max_msgs_per_subject} (wanted {config.history})")
    storage = "memory" if actual.storage == api.StorageType.MEMORY else "file"
    if storage != config.storage:
        diffs.append(f"storage {storage} (wanted {config.storage})")
    if (actual.num_replicas or 1) != config.replicas:
        diffs.append(f"replicas {actual.num_replicas} (wanted {config.replicas})")
    if (actual.max_msg_size or -1) not in (-1, config.max_value_bytes):
        diffs.append(f"max_value_bytes {actual.max_msg_size} (wanted {config.max_value_bytes})")
    return diffs
