"""Operations: provisioning NATS from a config, schema migrations."""

from __future__ import annotations

from ._migrations import (
    DEFAULT_PARAMETERS,
    Applied,
    Migration,
    MigrationError,
    discover,
    plan_down,
    plan_up,
    render,
    verify,
)
from ._provisioning import DEFAULT, ConsumerSpec, ProvisionConfig, StreamSpec, load

__all__ = [
    "DEFAULT",
    "DEFAULT_PARAMETERS",
    "Applied",
    "ConsumerSpec",
    "Migration",
    "MigrationError",
    "ProvisionConfig",
    "StreamSpec",
    "discover",
    "load",
    "plan_down",
    "plan_up",
    "render",
    "verify",
]
