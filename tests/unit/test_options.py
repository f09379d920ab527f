"""Options and DSNs are read strictly, in one place: a value that cannot be honoured is an
``InvalidArgument`` naming the option and its range, never changed, on every backend alike."""

from __future__ import annotations

from typing import Any

import pytest

import msstore
from msstore._internal.options import opt_float, opt_int
from msstore.buckets import BucketConfig
from msstore.errors import InvalidArgument

BAD_BUCKET_OPTIONS = [
    ("history=0", "history"),
    ("history=65", "history"),
    ("history=--5", "history"),
    ("history=", "history"),
    ("ttl=0", "ttl"),
    ("ttl=-1", "ttl"),
    ("ttl=1.5", "ttl"),
    ("replicas=0", "replicas"),
    ("replicas=6", "replicas"),
    ("max_value_bytes=0", "max_value_bytes"),
    ("storage=disk", "storage"),
    ("per_key_ttl=maybe", "per_key_ttl"),
]


@pytest.mark.parametrize(("query", "option"), BAD_BUCKET_OPTIONS)
@pytest.mark.parametrize("scheme", ["memory", "nats"])
def test_a_bad_bucket_option_is_refused_naming_it(scheme: str, query: str, option: str) -> None:
    # nats:// reads its options before it connects: no server is needed to refuse them.
    url = "memory://b" if scheme == "memory" else "nats://127.0.0.1:1/b"
    with pytest.raises(InvalidArgument, match=rf"\b{option}\b"):
        msstore.open_kv(f"{url}?{query}")


@pytest.mark.parametrize("value", ["x", "nan", "inf", "-1", "0", "1e9"])
def test_a_bad_request_timeout_is_refused(value: str) -> None:
    with pytest.raises(InvalidArgument, match="request_timeout"):
        msstore.open_kv(f"nats://127.0.0.1:1/b?request_timeout={value}")


def test_good_bucket_options_are_kept_as_given() -> None:
    config = BucketConfig.from_options(
        "b", {"history": "5", "ttl": "1800", "replicas": "3", "storage": "memory"}
    )
    assert (config.history, config.ttl, config.replicas, config.storage) == (5, 1800, 3, "memory")
    assert BucketConfig.from_options("b", {"ttl": "none"}).ttl is None


def test_int_and_float_options_name_their_range() -> None:
    with pytest.raises(InvalidArgument, match="option n must be an integer from 1 to 9, got '0'"):
        opt_int({"n": "0"}, "n", 1, minimum=1, maximum=9)
    with pytest.raises(InvalidArgument, match="> 0"):
        opt_float({"t": "nan"}, "t", 1.0)
    assert opt_float({"t": "2.5"}, "t", 1.0) == 2.5


@pytest.mark.parametrize("dsn", ["garbage dsn", "mysql://u@h/db", ""])
def test_a_dsn_that_is_not_postgresql_is_refused(dsn: str) -> None:
    from msstore.backends.postgres import Migrator, PostgresStateStore

    with pytest.raises(InvalidArgument):
        Migrator(dsn)
    with pytest.raises(InvalidArgument):
        PostgresStateStore(dsn)


def test_the_memory_vector_index_refuses_a_filter_that_is_not_a_mapping() -> None:
    from msstore.backends.memory import MemoryVectorIndex

    index = MemoryVectorIndex(dim=2)
    index.add(["a"], [[1.0, 0.0]])
    with pytest.raises(InvalidArgument, match="where"):
        index.search([1.0, 0.0], where=["x"])  # type: ignore[arg-type]


BAD_VALUES = ["x", None, -1, float("nan"), True, [1]]


def _option_classes() -> list[tuple[str, Any, dict[str, Any], list[str]]]:
    from msstore.backends.postgres import PoolSettings
    from msstore.state import FlushPolicy

    pool = {
        "min_size": 1,
        "max_size": 2,
        "acquire_timeout": 1.0,
        "idle_timeout": 1.0,
        "max_lifetime": 1.0,
    }
    return [
        (
            "FlushPolicy",
            FlushPolicy,
            {},
            ["threshold", "max_lag", "reconcile_every", "retry_initial", "retry_max"],
        ),
        ("PoolSettings", PoolSettings, pool, [*pool, "check_on_acquire"]),
    ]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=repr)
def test_option_classes_refuse_a_bad_value_naming_the_field(bad: object) -> None:
    for name, cls, base, fields in _option_classes():
        for field in fields:
            if bad is True and field == "check_on_acquire":
                continue
            with pytest.raises(InvalidArgument, match=field):
                cls(**{**base, field: bad})
            assert name


def test_l1_cache_and_nats_servers_refuse_values_of_the_wrong_kind() -> None:
    from msstore.backends.nats import NatsConfig
    from msstore.state import L1Cache

    with pytest.raises(InvalidArgument, match="ttl"):
        L1Cache(ttl="30")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="max_size"):
        L1Cache(max_size=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="servers"):
        NatsConfig(servers=4222)
