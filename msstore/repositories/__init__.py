"""Typed repositories over the dual store: keyed attrs records, and the agent registry.

(Agent work, the task queue, messages and sessions, is in :mod:`msstore.work`.)
"""

from __future__ import annotations

from ._keyed import Agent, AgentRepository, KeyedRepository

__all__ = ["Agent", "AgentRepository", "KeyedRepository"]
