"""Apply a :class:`~msstore.ops.ProvisionConfig` to a NATS server, idempotently.

Each resource is created when missing and left alone when present: one that differs from the
configuration is reported, never changed (it may hold data another tool relies on). Replica
counts above the cluster's size are capped, with a note in the report. Streams and consumers go
through JetStream's JSON API directly, since nats-py's config classes lack some of the settings
(the pull request limits of a consumer).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs
import orjson
from nats.js import api

from msstore.buckets import BucketConfig
from msstore.errors import MsstoreError
from msstore.ops import ConsumerSpec, ProvisionConfig, StreamSpec

from ._client import Conn, NatsClient
from ._streams import compare, stream_config

__all__ = ["Change", "cluster_size", "provision"]

log = logging.getLogger("msstore.backends.nats")
NS: Final = 1_000_000_000
API_TIMEOUT: Final = 10.0


@attrs.frozen
class Change:
    """One line of a provisioning report."""

    kind: str  # bucket, stream, consumer
    name: str
    action: str  # created, would create, unchanged, differs, recorded
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.action:<12} {self.kind:<8} {self.name}" + (
            f"  ({self.detail})" if self.detail else ""
        )


def cluster_size(client: NatsClient) -> int:
    """How many servers the connected cluster has (1 for a lone server)."""
    info = client.server_info
    if not info.get("cluster"):
        return 1
    urls = {str(u) for u in info.get("connect_urls") or []}
    return max(1, len(urls))


def stream_json(spec: StreamSpec, replicas: int) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": spec.name,
        "subjects": list(spec.subjects),
        "retention": spec.retention,
        "storage": spec.storage,
        "max_age": spec.max_age * NS,
        "max_msgs": spec.max_msgs,
        "max_bytes": spec.max_bytes,
        "max_msg_size": spec.max_msg_size,
        "num_replicas": replicas,
        "discard": spec.discard,
        # JetStream refuses a duplicate window longer than the max age.
        "duplicate_window": (
            min(spec.duplicate_window, spec.max_age) if spec.max_age else spec.duplicate_window
        )
        * NS,
        "allow_rollup_hdrs": spec.allow_rollup_hdrs,
        "deny_delete": spec.deny_delete,
        "deny_purge": spec.deny_purge,
    }
    if spec.description:
        config["description"] = spec.description
    return config


def consumer_json(spec: ConsumerSpec) -> dict[str, Any]:
    config: dict[str, Any] = {
        "durable_name": spec.name,
        "name": spec.name,
        "deliver_policy": spec.deliver_policy,
        "ack_policy": spec.ack_policy,
        "ack_wait": int(spec.ack_wait * NS),
        "max_deliver": spec.max_deliver,
        "max_ack_pending": spec.max_ack_pending,
        "replay_policy": spec.replay_policy,
    }
    if spec.description:
        config["description"] = spec.description
    if spec.filter_subject:
        config["filter_subject"] = spec.filter_subject
    if spec.kind == "push":
        config["deliver_subject"] = f"msstore.deliver.{spec.stream}.{spec.name}"
    if spec.max_batch is not None:
        config["max_batch"] = spec.max_batch
    if spec.max_expires is not None:
        config["max_expires"] = int(spec.max_expires * NS)
    if spec.max_bytes is not None:
        config["max_bytes"] = spec.max_bytes
    return config


def differences(wanted: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Settings in ``wanted`` that the server holds with another value."""
    out = []
    for key, value in wanted.items():
        have = actual.get(key)
        if isinstance(value, list):
            have = list(have or [])
        if have != value:
            out.append(f"{key} {have!r} (wanted {value!r})")
    return out


async def _api(c: Conn, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    payload = orjson.dumps(body) if body is not None else b""
    msg = await c.nc.request(f"$JS.API.{subject}", payload, timeout=API_TIMEOUT)
    data: dict[str, Any] = orjson.loads(msg.data)
    return data


def _failed(data: dict[str, Any], what: str) -> MsstoreError:
    error = data["error"]
    return MsstoreError(f"{what}: {error.get('description')} (err_code {error.get('err_code')})")


def _bucket_differences(wanted: BucketConfig, actual: dict[str, Any]) -> list[str]:
    return compare(wanted, api.StreamConfig.from_response(actual))


async def _create_bucket(c: Conn, client: NatsClient, wanted: BucketConfig) -> None:
    await c.js.add_stream(stream_config(wanted, client))


async def _post(c: Conn, subject: str, body: dict[str, Any], what: str) -> None:
    created = await _api(c, subject, body)
    if "error" in created:
        raise _failed(created, what)


async def _reconcile(
    c: Conn,
    *,
    kind: str,
    label: str,
    info: str,
    diff: Callable[[dict[str, Any]], list[str]],
    create: Callable[[], Awaitable[None]],
    dry_run: bool,
    note: str = "",
) -> Change:
    """Create one resource if it is missing; else say how it compares."""
    data = await _api(c, info)
    if "error" not in data:
        diffs = diff(data["config"])
        return Change(kind, label, "differs" if diffs else "unchanged", "; ".join(diffs))
    if dry_run:
        return Change(kind, label, "would create", note)
    await create()
    return Change(kind, label, "created", note)


async def _provision(
    c: Conn, client: NatsClient, config: ProvisionConfig, dry_run: bool
) -> list[Change]:
    size = cluster_size(client)
    report: list[Change] = []

    def capped(kind: str, name: str, replicas: int) -> tuple[int, str]:
        if replicas <= size:
            return replicas, ""
        log.warning("%s %s: replicas %d capped to the cluster size %d", kind, name, replicas, size)
        return size, f"replicas {replicas} capped to {size}"

    for bucket in config.buckets:
        replicas, note = capped("bucket", bucket.name, bucket.replicas)
        wanted = attrs.evolve(bucket, replicas=replicas)
        report.append(
            await _reconcile(
                c,
                kind="bucket",
                label=bucket.name,
                info=f"STREAM.INFO.KV_{bucket.name}",
                diff=functools.partial(_bucket_differences, wanted),
                create=functools.partial(_create_bucket, c, client, wanted),
                dry_run=dry_run,
                note=note,
            )
        )

    for stream in config.streams:
        replicas, note = capped("stream", stream.name, stream.replicas)
        body = stream_json(stream, replicas)
        report.append(
            await _reconcile(
                c,
                kind="stream",
                label=stream.name,
                info=f"STREAM.INFO.{stream.name}",
                diff=functools.partial(differences, body),
                create=functools.partial(
                    _post,
                    c,
                    f"STREAM.CREATE.{stream.name}",
                    body,
                    f"create stream {stream.name}",
                ),
                dry_run=dry_run,
                note=note,
            )
        )

    for consumer in config.consumers:
        label = f"{consumer.stream}/{consumer.name}"
        if consumer.kind == "ephemeral":
            report.append(
                Change(
                    "consumer",
                    label,
                    "recorded",
                    "ephemeral: created by each reader, nothing to provision",
                )
            )
            continue
        body = consumer_json(consumer)
        report.append(
            await _reconcile(
                c,
                kind="consumer",
                label=label,
                info=f"CONSUMER.INFO.{consumer.stream}.{consumer.name}",
                diff=functools.partial(differences, body),
                create=functools.partial(
                    _post,
                    c,
                    f"CONSUMER.CREATE.{consumer.stream}.{consumer.name}",
                    {"stream_name": consumer.stream, "config": body},
                    f"create consumer {label}",
                ),
                dry_run=dry_run,
            )
        )
    return report


def provision(
    client: NatsClient, config: ProvisionConfig, *, dry_run: bool = False
) -> list[Change]:
    """Create what ``config`` names and the server lacks; report everything else."""
    return client.run(
        lambda c: _provision(c, client, config, dry_run),
        write=not dry_run,
        what="provision",
        timeout=client.config.request_timeout * 4 + 30,
    )
