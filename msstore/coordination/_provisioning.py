"""Declarative JetStream resources: KV buckets, streams and consumers, as data.

:data:`DEFAULT` is msstore's own set (the buckets, streams and consumers its stores and relay
use). A configuration is built from Python
objects (:class:`ProvisionConfig`) or read from a TOML or JSON file (:func:`load`)::

    [[buckets]]
    name = "SESSION_DATA"
    ttl = 3600
    history = 1
    replicas = 3

    [[streams]]
    name = "AGENT_MESSAGES"
    subjects = ["messages.direct.>"]
    storage = "memory"
    max_age = 300

    [[consumers]]
    stream = "AGENT_MESSAGES"
    name = "message-batch-processor"
    kind = "pull"

Applying it to a server is the NATS backend's job (``msstore provision``). Of note: the task
processor is a durable *pull* consumer, so it has no ``rate_limit`` (which NATS applies to push
consumers only, in bits per second); no placement tags are set, since they need a server
configured with matching tags; TASK_EXECUTION captures ``tasks.updated.>`` too (the outbox
trigger's subject for a change that is not a status change: a retry put back to pending, a lease
renewed); ``DEAD_LETTERS`` (``msstore.dead.>``) keeps what a consumer gave up on.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from msstore.buckets import BucketConfig
from msstore.errors import InvalidArgument

__all__ = ["DEFAULT", "ConsumerSpec", "ProvisionConfig", "StreamSpec", "load"]

MiB = 1024 * 1024
GiB = 1024 * MiB


def _positive_or_unlimited(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or (value < 1 and value != -1):
        raise InvalidArgument(
            f"{attribute.name} must be a positive int or -1 (unlimited), got {value!r}"
        )


def _subjects(value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str) or not value:
        raise InvalidArgument(f"subjects must be a non-empty list, got {value!r}")
    return tuple(value)


@attrs.frozen(kw_only=True)
class StreamSpec:
    """A JetStream stream. Ages and windows are seconds; sizes bytes; -1 means unlimited."""

    name: str
    subjects: tuple[str, ...] = attrs.field(converter=_subjects)
    description: str = ""
    storage: Literal["file", "memory"] = "file"
    retention: Literal["limits", "interest", "workqueue"] = "limits"
    max_age: int = 0
    max_msgs: int = attrs.field(default=-1, validator=_positive_or_unlimited)
    max_bytes: int = attrs.field(default=-1, validator=_positive_or_unlimited)
    max_msg_size: int = attrs.field(default=-1, validator=_positive_or_unlimited)
    replicas: int = 1
    discard: Literal["old", "new"] = "old"
    duplicate_window: int = 120
    allow_rollup_hdrs: bool = False
    deny_delete: bool = False
    deny_purge: bool = False

    def __attrs_post_init__(self) -> None:
        if self.storage not in ("file", "memory"):
            raise InvalidArgument(f"stream {self.name}: storage must be file or memory")
        if self.retention not in ("limits", "interest", "workqueue"):
            raise InvalidArgument(f"stream {self.name}: unknown retention {self.retention!r}")
        if self.discard not in ("old", "new"):
            raise InvalidArgument(f"stream {self.name}: discard must be old or new")
        if type(self.replicas) is not int or not 1 <= self.replicas <= 5:
            raise InvalidArgument(f"stream {self.name}: replicas must be 1-5")


@attrs.frozen(kw_only=True)
class ConsumerSpec:
    """A consumer on a stream. ``kind``: ``pull`` or ``push`` (durable), or ``ephemeral``
    (created by whoever reads, so provisioning only records it)."""

    stream: str
    name: str
    kind: Literal["pull", "push", "ephemeral"] = "pull"
    description: str = ""
    deliver_policy: Literal["all", "last", "new", "last_per_subject"] = "all"
    ack_policy: Literal["explicit", "none", "all"] = "explicit"
    ack_wait: float = 30.0
    max_deliver: int = -1
    max_ack_pending: int = -1
    filter_subject: str | None = None
    replay_policy: Literal["instant", "original"] = "instant"
    max_batch: int | None = None
    max_expires: float | None = None
    max_bytes: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.kind not in ("pull", "push", "ephemeral"):
            raise InvalidArgument(f"consumer {self.name}: kind must be pull, push or ephemeral")
        if self.deliver_policy not in ("all", "last", "new", "last_per_subject"):
            raise InvalidArgument(f"consumer {self.name}: unknown deliver_policy")
        if self.ack_policy not in ("explicit", "none", "all"):
            raise InvalidArgument(f"consumer {self.name}: unknown ack_policy")


@attrs.frozen(kw_only=True)
class ProvisionConfig:
    """The JetStream resources to provision: KV buckets, streams and consumers (``DEFAULT`` holds
    msstore's own; ``load`` reads one from TOML or JSON)."""

    buckets: tuple[BucketConfig, ...] = ()
    streams: tuple[StreamSpec, ...] = ()
    consumers: tuple[ConsumerSpec, ...] = ()

    def __attrs_post_init__(self) -> None:
        streams = {s.name for s in self.streams}
        for consumer in self.consumers:
            if consumer.stream not in streams:
                raise InvalidArgument(
                    f"consumer {consumer.name} names stream {consumer.stream}, "
                    "which the configuration does not define"
                )


DEFAULT = ProvisionConfig(
    buckets=(
        BucketConfig(name="SESSION_DATA", ttl=3600, history=1, storage="file", replicas=3),
        BucketConfig(
            name="AGENT_STATE", ttl=1800, history=5, storage="file", replicas=3, compression=True
        ),
        BucketConfig(name="AGENT_CONFIG", ttl=None, history=10, storage="file", replicas=3),
        BucketConfig(name="QUERY_CACHE", ttl=300, history=1, storage="memory", replicas=1),
    ),
    streams=(
        StreamSpec(
            name="AGENT_STATE",
            description="Real-time agent state updates and synchronization",
            subjects=("agents.state.>", "agents.lifecycle.>", "agents.heartbeat.>"),
            storage="file",
            retention="limits",
            max_age=1800,
            max_msgs=1_000_000,
            max_bytes=GiB,
            max_msg_size=MiB,
            replicas=3,
            discard="old",
            duplicate_window=300,
            allow_rollup_hdrs=True,
        ),
        StreamSpec(
            name="TASK_EXECUTION",
            description="Task lifecycle events and execution tracking",
            subjects=(
                "tasks.created.>",
                "tasks.started.>",
                "tasks.completed.>",
                "tasks.failed.>",
                "tasks.cancelled.>",
                "tasks.updated.>",
            ),
            storage="file",
            retention="interest",
            max_age=86400,
            max_msgs=10_000_000,
            max_bytes=10 * GiB,
            max_msg_size=5 * MiB,
            replicas=3,
        ),
        StreamSpec(
            name="AGENT_MESSAGES",
            description="Inter-agent communication and messaging",
            subjects=("messages.direct.>", "messages.broadcast.>", "messages.notification.>"),
            storage="memory",
            retention="limits",
            max_age=300,
            max_msgs=100_000,
            max_bytes=100 * MiB,
            max_msg_size=256 * 1024,
            replicas=1,
        ),
        StreamSpec(
            name="DEAD_LETTERS",
            description="Events a consumer gave up on, with the reason (msstore's own)",
            subjects=("msstore.dead.>",),
            storage="file",
            retention="limits",
            max_age=7 * 86400,
            max_msgs=1_000_000,
            max_bytes=GiB,
            replicas=3,
        ),
    ),
    consumers=(
        ConsumerSpec(
            stream="TASK_EXECUTION",
            name="task-processor",
            kind="pull",
            description="Processes task execution events",
            deliver_policy="all",
            ack_policy="explicit",
            ack_wait=30.0,
            max_deliver=3,
            max_ack_pending=100,
            filter_subject="tasks.started.>",
            replay_policy="instant",
        ),
        ConsumerSpec(
            stream="AGENT_STATE",
            name="monitoring",
            kind="ephemeral",
            description="Real-time monitoring of agent state changes",
            deliver_policy="last",
            ack_policy="none",
            max_deliver=1,
            ack_wait=5.0,
        ),
        ConsumerSpec(
            stream="AGENT_MESSAGES",
            name="message-batch-processor",
            kind="pull",
            description="Batch processing of agent messages",
            deliver_policy="all",
            ack_policy="explicit",
            ack_wait=60.0,
            max_deliver=5,
            max_batch=100,
            max_expires=30.0,
            max_bytes=MiB,
        ),
    ),
)
"""msstore's own buckets, streams and consumers (what msstore provision creates)."""


def _build(cls: type[Any], item: Any, where: str) -> Any:
    if not isinstance(item, Mapping):
        raise InvalidArgument(f"{where}: expected a table, got {item!r}")
    known = {a.name for a in attrs.fields(cls)}
    unknown = set(item) - known
    if unknown:
        raise InvalidArgument(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    try:
        return cls(**item)
    except TypeError as err:
        raise InvalidArgument(f"{where}: {err}") from None


def from_mapping(data: Mapping[str, Any]) -> ProvisionConfig:
    """Build a configuration from parsed TOML/JSON (``buckets``, ``streams``, ``consumers``)."""
    unknown = set(data) - {"buckets", "streams", "consumers"}
    if unknown:
        raise InvalidArgument(f"unknown section(s) {', '.join(sorted(unknown))}")
    return ProvisionConfig(
        buckets=tuple(
            _build(BucketConfig, b, f"buckets[{i}]") for i, b in enumerate(data.get("buckets", []))
        ),
        streams=tuple(
            _build(StreamSpec, s, f"streams[{i}]") for i, s in enumerate(data.get("streams", []))
        ),
        consumers=tuple(
            _build(ConsumerSpec, c, f"consumers[{i}]")
            for i, c in enumerate(data.get("consumers", []))
        ),
    )


def load(path: str | Path) -> ProvisionConfig:
    """Read a ``.toml`` or ``.json`` provisioning file."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as err:
        raise InvalidArgument(f"cannot read {path}: {err.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text.decode())
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidArgument(
            f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {err}"
        ) from None
    return from_mapping(data)
