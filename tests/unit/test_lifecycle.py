"""Pure logic of the dual store: dirty set, monitor, L1, flush policy, recovery records,
lifecycle transitions, and the flusher's retry and isolation over a failing table store."""

from __future__ import annotations

import pytest

from msstore.errors import (
    ConsistencyViolation,
)
from msstore.state import (
    LifecycleState,
    check_transition,
)


def test_lifecycle_transitions() -> None:
    check_transition("a", LifecycleState.COLD, LifecycleState.HYDRATING)
    check_transition("a", LifecycleState.FLUSHING, LifecycleState.ACTIVE)
    with pytest.raises(ConsistencyViolation, match="allowed: HYDRATING"):
        check_transition("a", LifecycleState.COLD, LifecycleState.ACTIVE)
