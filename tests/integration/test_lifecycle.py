"""The state lifecycle and checkpoints over the three compositions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from msstore.errors import ConsistencyViolation, InvalidArgument, NotFound
from msstore.protocols import DataStorage, KeyValueStore
from msstore.state import HybridStateManager, LifecycleState, StateLifecycleManager

Make = Callable[..., tuple[KeyValueStore, DataStorage]]
S = LifecycleState


def test_lifecycle_walks_its_states_and_refuses_others(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    storage.store("a1.plan", {"step": 1})
    storage.store("a1.notes", ["n"])
    seen: list[tuple[str, str]] = []
    with HybridStateManager(kv, storage) as m:
        life = StateLifecycleManager(
            m, on_transition=lambda a, o, n: seen.append((o.value, n.value))
        )
        assert life.state("a1") is S.COLD
        with pytest.raises(ConsistencyViolation, match="COLD to FLUSHING"):
            life.flush("a1")
        assert life.hydrate("a1") == 2
        assert kv.get("a1.plan").value == {"step": 1}  # type: ignore[union-attr]
        assert life.state("a1") is S.ACTIVE
        m.put("a1.plan", {"step": 2})
        life.flush("a1")
        assert storage.retrieve("a1.plan").value == {"step": 2}  # type: ignore[union-attr]
        life.expire("a1")
        assert life.state("a1") is S.EXPIRED
        with pytest.raises(ConsistencyViolation):
            life.expire("a1")
        life.activate("a1")
        assert life.state("a1") is S.ACTIVE
        with pytest.raises(InvalidArgument):
            life.state("a.b")
    assert seen == [
        ("COLD", "HYDRATING"), ("HYDRATING", "ACTIVE"), ("ACTIVE", "FLUSHING"),
        ("FLUSHING", "ACTIVE"), ("ACTIVE", "FLUSHING"), ("FLUSHING", "ACTIVE"),
        ("ACTIVE", "EXPIRED"), ("EXPIRED", "HYDRATING"), ("HYDRATING", "ACTIVE"),
    ]  # fmt: skip


def test_hydration_never_overwrites_newer_kv_values(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    storage.store("a2.k", "sql")
    with HybridStateManager(kv, storage) as m:
        kv.put("a2.k", "kv is newer")
        assert StateLifecycleManager(m).hydrate("a2") == 0
        assert kv.get("a2.k").value == "kv is newer"  # type: ignore[union-attr]


def test_checkpoint_and_restore(hybrid_stores: Make) -> None:
    kv, storage = hybrid_stores()
    with HybridStateManager(kv, storage) as m:
        life = StateLifecycleManager(m)
        m.put("a3.plan", {"step": 1})
        m.put("a3.goal", "ship")
        cp = life.checkpoint("a3", name="before-risky-step", trigger="manual")
        assert cp.checkpoint_id and cp.values == {"plan": {"step": 1}, "goal": "ship"}
        assert cp.kv_revision >= 2
        m.put("a3.plan", {"step": 99})
        m.put("a3.extra", "made after the checkpoint")
        restored = life.restore("a3", cp.checkpoint_id)
        assert restored.name == "before-risky-step" and restored.trigger == "manual"
        assert m.get("a3.plan") == {"step": 1}
        assert m.get("a3.extra") is None
        assert storage.retrieve("a3.plan").value == {"step": 1}  # type: ignore[union-attr]
        assert storage.retrieve("a3.extra") is None
        assert [c.checkpoint_id for c in life.checkpoints("a3")] == [cp.checkpoint_id]
        with pytest.raises(NotFound):
            life.restore("a3", "00000000-0000-0000-0000-000000000000")
        with pytest.raises(NotFound):
            life.restore("a3", "not-a-uuid")
