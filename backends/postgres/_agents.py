"""Which agent a key belongs to, and its row in ``agents.registry``.

A key's first token names its agent (:func:`msstore.keys.agent_of`); ``agents.state`` keys rows
by ``(agent_id, state_key)`` where ``agent_id`` is that token when it is a UUID, else a UUID
derived from it (uuid5), so one agent's keys share a partition and
``agents.hydrate_agent_state()`` finds them. Each agent a store meets gets a registry row
(``agent_type`` ``msstore``).
"""

from __future__ import annotations

import functools
import uuid
from typing import Final

from msstore import keys as keygrammar

__all__ = ["AGENT_NAMESPACE", "ENSURE_AGENTS", "agent_id_for", "agent_of_token"]

AGENT_NAMESPACE: Final = uuid.UUID("6d737374-6f72-4500-8000-6167656e7473")
ENSURE_AGENTS: Final = """
INSERT INTO agents.registry (agent_id, agent_type, agent_name)
SELECT id, 'msstore', name FROM unnest(%b::uuid[], %b::text[]) AS a(id, name)
ON CONFLICT (agent_id) DO NOTHING
"""


def agent_id_for(key: str) -> uuid.UUID:
    """The agent a key belongs to: its first token, as a UUID or derived from it."""
    return agent_of_token(keygrammar.agent_of(key))


@functools.lru_cache(maxsize=65536)
def agent_of_token(token: str) -> uuid.UUID:
    # Cached: a flush names the same few agents thousands of times, and uuid5 costs a SHA-1.
    try:
        return uuid.UUID(token)
    except ValueError:
        return uuid.uuid5(AGENT_NAMESPACE, token)
