"""Embedded PostgreSQL and NATS servers (from PyPI wheels) for the demo, the tests and the
benches."""

from __future__ import annotations

from ._embedded import (
    EmbeddedNats,
    EmbeddedNatsCluster,
    EmbeddedPostgres,
    ServerStartError,
    free_port,
)

__all__ = [
    "EmbeddedNats",
    "EmbeddedNatsCluster",
    "EmbeddedPostgres",
    "ServerStartError",
    "free_port",
]
