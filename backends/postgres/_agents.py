"""Which agent a key belongs to, and its row in ``agents.registry``.

A key's first token names its agent (:func:`msstore.keys.agent_of`); ``agents.state`` keys rows
by ``(agent_id, state_key)`` where ``agent_id`` is that token when it is a UUID, else a UUID
derived from it (uuid5), so one agent's keys share a partition and
``agents.hydrate_agent_state()`` finds them. Each agent a store meets gets a registry row
(``agent_type`` ``msstore``).
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Final

from msstore import keys as keygrammar

__all__ = ["AGENT_NAMESPACE", "ENSURE_AGENTS", "AgentRegistrar", "agent_id_for", "agent_of_token"]

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


class AgentRegistrar:
    """The agents a store has registered (agents.registry rows its writes reference).

    An agent counts as registered only once its row is committed: :meth:`ensure` inserts the
    missing ones in a statement of their own (``run`` runs it in autocommit) before the caller's
    transaction, so no other thread skips a row that a transaction still holds uncommitted (its
    foreign key check would then fail).
    """

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def ensure(
        self, run: Callable[[Callable[[Any], Any]], Any], tokens: Iterable[str | None]
    ) -> None:
        with self._lock:
            wanted = sorted({t for t in tokens if t is not None} - self._known)
        if not wanted:
            return
        run(lambda c: c.execute(ENSURE_AGENTS, ([agent_of_token(t) for t in wanted], wanted)))
        with self._lock:
            self._known.update(wanted)

    def forget(self) -> None:
        """Registry rows may have gone (a foreign key failed): check them all again."""
        with self._lock:
            self._known.clear()
