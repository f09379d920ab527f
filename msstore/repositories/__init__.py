"""Typed repositories over the dual store: keyed records, the agent registry."""

from __future__ import annotations

from ._keyed import Agent, AgentRepository, KeyedRepository

__all__ = [
    "Agent",
    "AgentRepository",
    "KeyedRepository",
]
