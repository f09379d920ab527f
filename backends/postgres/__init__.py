"""The PostgreSQL backend. Needs ``msstore[postgres]`` (and ``msstore[vector]`` for vectors).

* :class:`Migrator` applies, rolls back and reports msstore's versioned migrations
  (``msstore migrate up|down|status``).
* :class:`Pools` keeps a ``psycopg_pool.ConnectionPool`` per role (primary, replicas,
  background, analytics) with production settings, round-robin reads with fallback,
  ``get_stats()`` and ``health()``; :func:`recommend_pool_size` sizes a pool for a workload.
* :class:`PostgresStateStore` is ``DataStorage`` on ``agents.state`` with the version-guarded
  bulk ``upsert_many`` (binary COPY + one merge) the flusher uses.
* :class:`PostgresTaskQueue` is ``TaskQueue`` on tasks.queue / dependencies / executions:
  ``FOR UPDATE SKIP LOCKED`` claims under leases, ``LISTEN/NOTIFY`` wake-ups with a poll.
* :class:`PostgresMessageLog` (channels, subscriptions, the log read through per-agent cursors)
  and :class:`PostgresSessionStore` (sessions.active, tokens kept as their SHA-256).
* :func:`transaction` runs a function in one transaction at an isolation level, retrying
  serialization failures, deadlocks and lost connections.
* :class:`PgVectorIndex` is ``VectorIndex`` on pgvector (HNSW, cosine / L2 / inner product,
  ``vector`` or ``halfvec``, filtered iterative scans, binary ``COPY`` loads); :class:`HnswParams`
  holds its index settings. ``pgvector://`` and ``postgresql://`` URLs open both stores
  (:class:`PostgresBackend`). :class:`PostgresFactStore` keeps the knowledge base's facts and
  embeddings (knowledge.facts, knowledge.embeddings).
* :class:`PostgresCheckpointStore` keeps graph checkpoints (graphs.*: LangGraph's, through
  ``msstore.integrations.langgraph``), values once per version, deleted threads fenced.
* :func:`dsn_from_env` builds a connection string from the ``PG_*`` variables.
"""

from __future__ import annotations

from ._agents import agent_id_for
from ._backend import PostgresBackend
from ._config import dsn_from_env
from ._facts import PostgresFactStore
from ._graphs import PostgresCheckpointStore
from ._jsonb import jsonb_text
from ._messages import PostgresMessageLog
from ._migrate import MigrationReport, MigrationStatus, Migrator
from ._outbox import PostgresOutbox
from ._pgvector import HnswParams
from ._pools import (
    Health,
    HealthProbe,
    Pools,
    PoolSettings,
    PoolSizeRecommendation,
    latency_status,
    recommend_pool_size,
)
from ._sagas import PostgresSagaLog
from ._sessions import PostgresSessionStore
from ._state import PostgresStateStore
from ._tasks import PostgresTaskQueue
from ._tx import Isolation, classify, transaction
from ._vector import PgVectorIndex

__all__ = [
    "Health",
    "HealthProbe",
    "HnswParams",
    "Isolation",
    "MigrationReport",
    "MigrationStatus",
    "Migrator",
    "PgVectorIndex",
    "PoolSettings",
    "PoolSizeRecommendation",
    "Pools",
    "PostgresBackend",
    "PostgresCheckpointStore",
    "PostgresFactStore",
    "PostgresMessageLog",
    "PostgresOutbox",
    "PostgresSagaLog",
    "PostgresSessionStore",
    "PostgresStateStore",
    "PostgresTaskQueue",
    "agent_id_for",
    "classify",
    "dsn_from_env",
    "jsonb_text",
    "latency_status",
    "recommend_pool_size",
    "transaction",
]
