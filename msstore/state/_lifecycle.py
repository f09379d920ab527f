"""Per-agent state lifecycle and checkpoints.

An agent's state is the set of keys whose first token is the agent id (``a1.plan``,
``a1.memory``). :class:`StateLifecycleManager` moves each agent through

``COLD -> HYDRATING -> ACTIVE -> FLUSHING -> ACTIVE``, and ``ACTIVE -> EXPIRED -> HYDRATING``

and refuses any other step with :class:`~msstore.errors.ConsistencyViolation`. Hydrating copies
the agent's SQL rows into KV (``create`` only: a newer KV value is never overwritten); flushing
waits for the hybrid manager's flusher; expiring flushes and then forgets the agent in process
(its KV entries expire on the bucket's TTL; SQL keeps them). A checkpoint is a snapshot of the
agent's values with the KV revision it was taken at, stored by the table store
(``agents.checkpoints`` in PostgreSQL); restoring writes the snapshot back through the manager
(new revisions, so it flushes like any write) and deletes keys the snapshot did not have.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

from msstore import keys as keygrammar
from msstore.errors import ConsistencyViolation, InvalidArgument, NotFound
from msstore.protocols import ChangeFeed, CheckpointStore
from msstore.records import Checkpoint, Query

from ._manager import HybridStateManager

__all__ = ["LifecycleState", "StateLifecycleManager", "check_transition"]


class LifecycleState(enum.Enum):
    """Where an agent's state is in its lifecycle (the moves allowed are in
    ``check_transition``)."""

    COLD = "COLD"  # no state loaded in KV
    HYDRATING = "HYDRATING"  # loading from SQL into KV
    ACTIVE = "ACTIVE"  # in KV, operational
    FLUSHING = "FLUSHING"  # writing to SQL
    EXPIRED = "EXPIRED"  # idle past its time: KV copy left to expire, SQL keeps it


ALLOWED: dict[LifecycleState, frozenset[LifecycleState]] = {
    LifecycleState.COLD: frozenset({LifecycleState.HYDRATING}),
    LifecycleState.HYDRATING: frozenset({LifecycleState.ACTIVE, LifecycleState.COLD}),
    LifecycleState.ACTIVE: frozenset({LifecycleState.FLUSHING, LifecycleState.EXPIRED}),
    LifecycleState.FLUSHING: frozenset({LifecycleState.ACTIVE}),
    LifecycleState.EXPIRED: frozenset({LifecycleState.HYDRATING}),
}


def check_transition(agent: str, old: LifecycleState, new: LifecycleState) -> None:
    """Raise ``ConsistencyViolation`` unless ``old -> new`` is a lifecycle step."""
    if new not in ALLOWED[old]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED[old]))
        raise ConsistencyViolation(
            f"agent {agent!r} cannot go from {old.value} to {new.value} (allowed: {allowed})",
            key=agent,
        )


class StateLifecycleManager:
    """Lifecycle states and checkpoints for agents over a :class:`HybridStateManager`.

    ``checkpoints`` defaults to the manager's table store when it keeps checkpoints.
    ``on_transition(agent, old, new)`` is called after every step (audit, metrics).
    """

    def __init__(
        self,
        manager: HybridStateManager,
        *,
        checkpoints: CheckpointStore | None = None,
        on_transition: Callable[[str, LifecycleState, LifecycleState], None] | None = None,
        hydrate_limit: int = 10_000,
    ) -> None:
        self.manager = manager
        if checkpoints is None and isinstance(manager.storage, CheckpointStore):
            checkpoints = manager.storage
        self._checkpoints = checkpoints
        self._on_transition = on_transition
        self._hydrate_limit = hydrate_limit
        self._states: dict[str, LifecycleState] = {}
        self._lock = threading.RLock()

    @staticmethod
    def _check_agent(agent: str) -> str:
        if not isinstance(agent, str) or "." in agent:
            raise InvalidArgument(f"an agent id is one key token, got {agent!r}")
        keygrammar.check_key(agent)
        return agent

    def state(self, agent: str) -> LifecycleState:
        """The agent's lifecycle state (``COLD`` until something moved it)."""
        return self._states.get(self._check_agent(agent), LifecycleState.COLD)

    def _move(self, agent: str, new: LifecycleState) -> None:
        with self._lock:
            old = self._states.get(agent, LifecycleState.COLD)
            check_transition(agent, old, new)
            self._states[agent] = new
        if self._on_transition is not None:
            self._on_transition(agent, old, new)

    # Steps ---------------------------------------------------------------------------------------

    def hydrate(self, agent: str) -> int:
        """Load the agent's SQL rows into KV (COLD or EXPIRED -> ACTIVE); rows copied."""
        self._move(self._check_agent(agent), LifecycleState.HYDRATING)
        try:
            rows = self.manager.storage.search(Query(prefix=agent + ".", limit=self._hydrate_limit))
            # Never over an entry KV already has (a newer value, or a delete marker).
            copied = sum(self.manager.cache.copy_to_kv(row) is not None for row in rows)
        except BaseException:
            self._move(agent, LifecycleState.COLD)
            raise
        self._move(agent, LifecycleState.ACTIVE)
        return copied

    def activate(self, agent: str) -> None:
        """Make the agent ACTIVE, hydrating it first if it is COLD or EXPIRED."""
        if self.state(agent) in (LifecycleState.COLD, LifecycleState.EXPIRED):
            self.hydrate(agent)

    def flush(self, agent: str, timeout: float | None = 30.0) -> None:
        """ACTIVE -> FLUSHING -> ACTIVE: every write made so far is committed to SQL."""
        self._move(self._check_agent(agent), LifecycleState.FLUSHING)
        try:
            self.manager.flush(timeout)
        finally:
            self._move(agent, LifecycleState.ACTIVE)

    def expire(self, agent: str) -> None:
        """Flush, then mark the agent EXPIRED (its KV copy is left to the bucket's TTL)."""
        self.flush(agent)
        self._move(agent, LifecycleState.EXPIRED)
        for key in self._keys(agent):
            self.manager.cache.l1.discard(key)

    # Checkpoints ---------------------------------------------------------------------------------

    def _store(self) -> CheckpointStore:
        if self._checkpoints is None:
            raise NotFound(
                f"{self.manager.storage!r} keeps no checkpoints",
                hint="pass checkpoints= (a MemoryTable or PostgresStateStore)",
            )
        return self._checkpoints

    def _keys(self, agent: str) -> list[str]:
        return self.manager.kv.keys(prefix=agent + ".")

    def checkpoint(
        self, agent: str, *, name: str | None = None, trigger: str | None = None
    ) -> Checkpoint:
        """Snapshot the agent's current values (hydrating it first if needed)."""
        store = self._store()
        self.activate(agent)
        values = self.manager.get_many(self._keys(agent))
        kv = self.manager.kv
        revision = kv.feed_state().last_revision if isinstance(kv, ChangeFeed) else 0
        checkpoint = Checkpoint(
            checkpoint_id="",
            agent=agent,
            values={k.split(".", 1)[1]: v for k, v in values.items() if v is not None},
            kv_revision=revision,
            created_at=time.time(),
            name=name,
            trigger=trigger,
        )
        self.flush(agent)
        return store.save_checkpoint(checkpoint)

    def restore(self, agent: str, checkpoint_id: str) -> Checkpoint:
        """Write checkpoint ``checkpoint_id`` back as the agent's state and flush it."""
        checkpoint = self._store().load_checkpoint(self._check_agent(agent), checkpoint_id)
        if checkpoint is None:
            raise NotFound(f"agent {agent!r} has no checkpoint {checkpoint_id!r}")
        self.activate(agent)
        wanted = {f"{agent}.{name}": value for name, value in checkpoint.values.items()}
        for key in self._keys(agent):
            if key not in wanted:
                self.manager.delete(key)
        if wanted:
            self.manager.put_many(wanted)
        self.flush(agent)
        return checkpoint

    def checkpoints(self, agent: str) -> list[Checkpoint]:
        """The agent's checkpoints, newest first."""
        return self._store().list_checkpoints(self._check_agent(agent))
