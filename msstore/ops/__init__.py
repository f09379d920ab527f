"""Operations: one health report over every tier, provisioning NATS from a config, schema
migrations."""

from __future__ import annotations

from msstore.coordination._provisioning import (
    DEFAULT,
    ConsumerSpec,
    ProvisionConfig,
    StreamSpec,
    load,
)

from ._health import (
    EXIT_CODES,
    Check,
    HealthReport,
    JetStreamProbe,
    LatencyLimits,
    PostgresProbe,
    StreamFacts,
    Thresholds,
    classify_latency,
    health,
)
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

__all__ = [
    "DEFAULT",
    "DEFAULT_PARAMETERS",
    "EXIT_CODES",
    "Applied",
    "Check",
    "ConsumerSpec",
    "HealthReport",
    "JetStreamProbe",
    "LatencyLimits",
    "Migration",
    "MigrationError",
    "PostgresProbe",
    "ProvisionConfig",
    "StreamFacts",
    "StreamSpec",
    "Thresholds",
    "classify_latency",
    "discover",
    "health",
    "load",
    "plan_down",
    "plan_up",
    "render",
    "verify",
]
