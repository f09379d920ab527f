"""Which tier each kind of data lives in: short-lived state in KV, long-lived records in SQL,
knowledge in the vector store."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from msstore._internal.ttl import check_ttl
from msstore.errors import InvalidArgument
from msstore.spi import check_mapping

__all__ = ["DEFAULT_ROUTES", "DataRouter", "DataType", "Route", "StorageLayer"]


class DataType(enum.Enum):
    """The kinds of data msstore places, each routed to a tier by :class:`DataRouter`."""

    SESSION_DATA = "SESSION_DATA"  # temporary user sessions
    AGENT_STATE = "AGENT_STATE"  # agent runtime state, flushed to SQL
    TASK_INFO = "TASK_INFO"  # task metadata
    MESSAGE_LOG = "MESSAGE_LOG"  # communication history
    KNOWLEDGE_BASE = "KNOWLEDGE_BASE"  # long-term facts with embeddings


class StorageLayer(enum.Enum):
    """The tiers data can live in."""

    MEMORY_CACHE = "MEMORY_CACHE"  # in-process cache
    DISTRIBUTED_KV = "DISTRIBUTED_KV"  # JetStream KV (short-term)
    RELATIONAL_DB = "RELATIONAL_DB"  # PostgreSQL (long-term)
    VECTOR_STORE = "VECTOR_STORE"  # pgvector, with SQL metadata


@attrs.frozen(kw_only=True)
class Route:
    """Where a data type goes.

    ``layer`` is the tier written first; ``bucket`` the KV bucket for KV routes; ``ttl`` the KV
    time to live in seconds; ``flush_to_sql`` whether the hybrid manager copies it to PostgreSQL.
    """

    layer: StorageLayer
    bucket: str | None = None
    ttl: int | None = None
    flush_to_sql: bool = False


DEFAULT_ROUTES: Mapping[DataType, Route] = {
    DataType.SESSION_DATA: Route(
        layer=StorageLayer.DISTRIBUTED_KV, bucket="SESSION_DATA", ttl=3600
    ),
    DataType.AGENT_STATE: Route(
        layer=StorageLayer.DISTRIBUTED_KV, bucket="AGENT_STATE", ttl=1800, flush_to_sql=True
    ),
    DataType.TASK_INFO: Route(layer=StorageLayer.RELATIONAL_DB),
    DataType.MESSAGE_LOG: Route(layer=StorageLayer.RELATIONAL_DB),
    DataType.KNOWLEDGE_BASE: Route(layer=StorageLayer.VECTOR_STORE),
}
"""msstore's routes, which DataRouter(overrides=...) changes."""


def _data_type(value: object) -> DataType:
    try:
        return value if isinstance(value, DataType) else DataType(str(value).upper())
    except ValueError:
        raise InvalidArgument(
            f"unknown data type {value!r}; known: {', '.join(t.value for t in DataType)}"
        ) from None


def _route(value: object, base: Route) -> Route:
    if isinstance(value, Route):
        return value
    if isinstance(value, (StorageLayer, str)):
        value = {"layer": value}
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"a route must be a Route, a layer name or a mapping, not {value!r}")
    unknown = set(value) - {"layer", "bucket", "ttl", "flush_to_sql"}
    if unknown:
        raise InvalidArgument(f"unknown route setting(s): {', '.join(sorted(unknown))}")
    layer = value.get("layer", base.layer)
    try:
        layer = layer if isinstance(layer, StorageLayer) else StorageLayer(str(layer).upper())
    except ValueError:
        raise InvalidArgument(
            f"unknown storage layer {layer!r}; known: {', '.join(s.value for s in StorageLayer)}"
        ) from None
    flush = value.get("flush_to_sql", base.flush_to_sql)
    if type(flush) is not bool:
        raise InvalidArgument(f"flush_to_sql must be true or false, got {flush!r}")
    bucket = value.get("bucket", base.bucket)
    if layer is StorageLayer.DISTRIBUTED_KV and not bucket:
        raise InvalidArgument("a DISTRIBUTED_KV route needs a bucket")
    return Route(
        layer=layer, bucket=bucket, ttl=check_ttl(value.get("ttl", base.ttl)), flush_to_sql=flush
    )


class DataRouter:
    """Maps each :class:`DataType` to a :class:`Route`: msstore's defaults, overridable.

    >>> router = DataRouter(overrides={"TASK_INFO": {"layer": "DISTRIBUTED_KV",
    ...                                              "bucket": "TASKS", "ttl": 600}})
    >>> router.route(DataType.TASK_INFO).bucket
    'TASKS'
    """

    def __init__(self, *, overrides: Mapping[Any, Any] | None = None) -> None:
        routes = dict(DEFAULT_ROUTES)
        for key, value in check_mapping(overrides, field="overrides", optional=True).items():
            data_type = _data_type(key)
            routes[data_type] = _route(value, routes[data_type])
        self._routes = routes

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DataRouter:
        """Build from a mapping such as a parsed file: ``{"routes": {"TASK_INFO": {...}}}``."""
        unknown = set(config) - {"routes"}
        if unknown:
            raise InvalidArgument(f"unknown router setting(s): {', '.join(sorted(unknown))}")
        return cls(overrides=config.get("routes") or {})

    def route(self, data_type: DataType | str) -> Route:
        """The route of ``data_type`` (a :class:`DataType` or its name)."""
        return self._routes[_data_type(data_type)]

    def select_storage(self, data_type: DataType | str) -> StorageLayer:
        """The tier ``data_type`` is written to first."""
        return self.route(data_type).layer

    def routes(self) -> dict[DataType, Route]:
        """Every data type's route."""
        return dict(self._routes)
