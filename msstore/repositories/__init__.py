"""Typed repositories over the stores: keyed records, the agent registry, the task queue."""

from __future__ import annotations

from ._keyed import Agent, AgentRepository, KeyedRepository
from ._tasks import (
    Claim,
    Execution,
    Priority,
    QueueStats,
    Task,
    TaskQueue,
    TaskSpec,
    TaskStatus,
    backoff,
)

__all__ = [
    "Agent",
    "AgentRepository",
    "Claim",
    "Execution",
    "KeyedRepository",
    "Priority",
    "QueueStats",
    "Task",
    "TaskQueue",
    "TaskSpec",
    "TaskStatus",
    "backoff",
]
