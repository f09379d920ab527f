"""Typed repositories over the stores: keyed records, the agent registry, and agent work: the
task queue, agent messages, sessions."""

from __future__ import annotations

from ._keyed import Agent, AgentRepository, KeyedRepository
from ._messages import Channel, ChannelType, Message, MessageLog, MessageType
from ._sessions import Session, SessionStore, SessionType
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
    "Channel",
    "ChannelType",
    "Claim",
    "Execution",
    "KeyedRepository",
    "Message",
    "MessageLog",
    "MessageType",
    "Priority",
    "QueueStats",
    "Session",
    "SessionStore",
    "SessionType",
    "Task",
    "TaskQueue",
    "TaskSpec",
    "TaskStatus",
    "backoff",
]
