from __future__ import annotations

from typing import Any

import pytest

from msstore.errors import InvalidArgument
from msstore.state import DataRouter, DataType, StorageLayer


def test_default_routes_follow_the_reference() -> None:
    router = DataRouter()
    assert router.select_storage(DataType.SESSION_DATA) is StorageLayer.DISTRIBUTED_KV
    assert router.select_storage("AGENT_STATE") is StorageLayer.DISTRIBUTED_KV
    assert router.select_storage("task_info") is StorageLayer.RELATIONAL_DB
    assert router.select_storage(DataType.MESSAGE_LOG) is StorageLayer.RELATIONAL_DB
    assert router.select_storage(DataType.KNOWLEDGE_BASE) is StorageLayer.VECTOR_STORE
    session = router.route(DataType.SESSION_DATA)
    state = router.route(DataType.AGENT_STATE)
    assert (session.bucket, session.ttl, session.flush_to_sql) == ("SESSION_DATA", 3600, False)
    assert (state.bucket, state.ttl, state.flush_to_sql) == ("AGENT_STATE", 1800, True)


def test_routes_are_overridable_by_config() -> None:
    router = DataRouter.from_config(
        {
            "routes": {
                "TASK_INFO": {"layer": "distributed_kv", "bucket": "TASKS", "ttl": 600},
                "AGENT_STATE": {"ttl": 60},
            }
        }
    )
    task = router.route(DataType.TASK_INFO)
    assert (task.layer, task.bucket, task.ttl) == (StorageLayer.DISTRIBUTED_KV, "TASKS", 600)
    state = router.route(DataType.AGENT_STATE)
    assert (state.bucket, state.ttl, state.flush_to_sql) == ("AGENT_STATE", 60, True)
    assert DataRouter().route(DataType.AGENT_STATE).ttl == 1800  # defaults untouched


@pytest.mark.parametrize(
    "config",
    [
        {"routes": {"NOPE": "RELATIONAL_DB"}},
        {"routes": {"TASK_INFO": "TAPE_DRIVE"}},
        {"routes": {"TASK_INFO": {"layer": "DISTRIBUTED_KV"}}},  # a KV route needs a bucket
        {"routes": {"AGENT_STATE": {"ttl": 0}}},
        {"routes": {"AGENT_STATE": {"flush_to_sql": "yes"}}},
        {"routes": {"AGENT_STATE": {"colour": "red"}}},
        {"routes": {"AGENT_STATE": 42}},
        {"rooutes": {}},
    ],
)
def test_bad_router_config_is_rejected(config: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        DataRouter.from_config(config)
