"""Backend factories for the conformance suites, parametrised by backend id."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from msstore.buckets import BucketConfig
from msstore.protocols import DataStorage, KeyValueStore, VectorIndex

pytest_plugins = ["pytester"]


@pytest.fixture(params=["memory"])
def kv_factory(request: pytest.FixtureRequest) -> Callable[[BucketConfig], KeyValueStore]:
    if request.param == "memory":
        from msstore.backends.memory import MemoryKV

        return MemoryKV
    raise AssertionError(request.param)


@pytest.fixture(params=["memory"])
def storage_factory(request: pytest.FixtureRequest) -> Callable[[], DataStorage]:
    if request.param == "memory":
        from msstore.backends.memory import MemoryTable

        return MemoryTable
    raise AssertionError(request.param)


@pytest.fixture(params=["memory"])
def vector_factory(request: pytest.FixtureRequest) -> Callable[..., VectorIndex]:
    if request.param == "memory":
        from msstore.backends.memory import MemoryVectorIndex

        return MemoryVectorIndex
    raise AssertionError(request.param)
