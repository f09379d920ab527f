"""The NATS JetStream backend (``nats://``): KV buckets as :class:`NatsKV`.

Needs ``pip install 'msstore[nats]'``. URL form::

    nats://[user:password@]host:4222[,host2:4222]/BUCKET?history=5&ttl=1800&replicas=3

Options: ``history``, ``ttl`` (seconds), ``max_value_bytes``, ``replicas``, ``storage``
(file|memory), ``per_key_ttl``, ``compression``, ``create`` (default true), ``request_timeout``.
Missing connection settings come from the ``NATS_*`` environment variables (see
:class:`NatsConfig`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult

from msstore.buckets import BUCKET_OPTIONS, BucketConfig
from msstore.errors import InvalidArgument, Unsupported
from msstore.registry import Backend
from msstore.spi import check_known, opt_bool, opt_float

from ._client import NatsClient
from ._config import NatsConfig, parse_size
from ._events import JetStreamSink
from ._kv import BatchError, NatsKV
from ._provision import Change, cluster_size, provision
from ._streams import stream_config

__all__ = [
    "BatchError",
    "Change",
    "JetStreamSink",
    "NatsBackend",
    "NatsClient",
    "NatsConfig",
    "NatsKV",
    "cluster_size",
    "parse_size",
    "provision",
    "stream_config",
]

_KV_OPTIONS = BUCKET_OPTIONS | {"create", "request_timeout", "connect_timeout"}


def _servers(url: SplitResult) -> list[str]:
    userinfo, _, hosts = url.netloc.rpartition("@")
    prefix = f"{url.scheme}://{userinfo + '@' if userinfo else ''}"
    return [prefix + h for h in hosts.split(",") if h]


def _config(url: SplitResult, options: Mapping[str, Any]) -> NatsConfig:
    """The connection settings: the URL's servers, the timeouts given, the rest from the
    ``NATS_*`` variables."""
    overrides: dict[str, Any] = {"servers": _servers(url)}
    if "request_timeout" in options:
        overrides["request_timeout"] = opt_float(options, "request_timeout", 5.0, maximum=3600.0)
    if "connect_timeout" in options:
        overrides["connect_timeout"] = opt_float(options, "connect_timeout", 2.0, maximum=3600.0)
    return NatsConfig.from_env(**overrides)


class NatsBackend(Backend):
    """The ``nats://`` scheme."""

    def open_kv(self, url: SplitResult, options: Mapping[str, Any]) -> NatsKV:
        check_known(options, _KV_OPTIONS, backend="NATS KV")
        name = url.path.strip("/")
        if not name:
            raise InvalidArgument("a nats:// KV URL names its bucket: nats://host:4222/BUCKET")
        nats_config = _config(url, options)
        minutes = nats_config.kv_ttl_minutes
        config = BucketConfig.from_options(
            nats_config.bucket_prefix + name,
            options,
            ttl=None if minutes is None else minutes * 60,
            replicas=nats_config.kv_replicas,
        )
        create = opt_bool(options, "create", True)
        client = NatsClient(nats_config)
        try:
            return NatsKV.open(client, config, create=create, owns_client=True)
        except BaseException:
            client.close()
            raise

    def open_event_sink(self, url: SplitResult, options: Mapping[str, Any]) -> JetStreamSink:
        """Outbox events onto this server's JetStream (``nats://host:4222``; options
        ``request_timeout``, ``connect_timeout``)."""
        check_known(options, {"request_timeout", "connect_timeout"}, backend="JetStream sink")
        client = NatsClient(_config(url, options))
        try:
            return JetStreamSink(client, owns_client=True)
        except BaseException:
            client.close()
            raise

    def open_storage(self, url: SplitResult, options: Mapping[str, Any]) -> Any:
        raise Unsupported("the nats:// backend has no table store; use postgresql://")

    def open_vector(self, url: SplitResult, options: Mapping[str, Any]) -> Any:
        raise Unsupported("the nats:// backend has no vector index; use pgvector://")
