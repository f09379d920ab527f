"""The agent repository over the three compositions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from msstore.errors import InvalidArgument, NotFound, VersionConflict
from msstore.protocols import DataStorage, KeyValueStore
from msstore.repositories import Agent, AgentRepository
from msstore.state import HybridStateManager, LifecycleState

Make = Callable[..., tuple[KeyValueStore, DataStorage]]
S = LifecycleState


def test_agent_repository_round_trip(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    with HybridStateManager(kv, storage) as m:
        agents = AgentRepository(m)
        saved = agents.save(Agent(id="a4", type="planner", name="Ada", capabilities=["plan"]))
        assert saved.version > 0
        found = agents.find("a4")
        assert found == saved
        updated = agents.update(attrs_evolve(found, status="active"))
        assert updated.version > saved.version
        with pytest.raises(VersionConflict):
            agents.update(attrs_evolve(saved, status="idle"))  # a stale copy
        with pytest.raises(NotFound):
            agents.update(Agent(id="nobody", type="x"))
        with pytest.raises(InvalidArgument):
            Agent(id="a5", type="x", status="sleepy")
        m.put("a4.plan", {"step": 1})
        assert agents.state("a4") == {"plan": {"step": 1}}
        m.flush()
        assert storage.retrieve("a4.registry").value["status"] == "active"  # type: ignore[union-attr]
        assert agents.delete("a4") is True
        assert agents.find("a4") is None
        assert agents.delete("a4") is False


def attrs_evolve(agent: Agent | None, **changes: object) -> Agent:
    import attrs

    assert agent is not None
    return attrs.evolve(agent, **changes)  # type: ignore[arg-type]
