"""What the model tests (Hypothesis state machines) share: the profile and the settings."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

# MSSTORE_MODEL_PROFILE=thorough runs many more examples (for a change to the model's subject).
THOROUGH = os.environ.get("MSSTORE_MODEL_PROFILE") == "thorough"


def run_model(machine: type[RuleBasedStateMachine], *, examples: int, steps: int) -> None:
    """Run ``machine`` for ``examples`` examples of up to ``steps`` steps, no deadline."""
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
