"""Benchmark workloads behind ``msstore bench NAME [--json]``.

Each workload is a function returning a flat dict of figures, always including a raw baseline
measured in the same run and the ratio against it: these machines are noisy, ratios hold. The
pytest-benchmark suites in ``benchmarks/`` time the same operations.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["BENCHMARKS", "PLOTTABLE", "load"]

BENCHMARKS: dict[str, str] = {
    "flush-thresholds": "msstore.bench.flush_thresholds:run",
    "langgraph": "msstore.bench.langgraph:run",
    "memory-kv": "msstore.bench.memory_kv:run",
    "nats-kv": "msstore.bench.nats_kv:run",
    "pg-upsert": "msstore.bench.pg_upsert:run",
    "relay": "msstore.bench.relay:run",
    "resolvers": "msstore.bench.resolvers:run",
    "saga": "msstore.bench.saga:run",
    "task-storage": "msstore.bench.task_storage:run",
    "tasks": "msstore.bench.tasks:run",
    "vector": "msstore.bench.vector:run",
}

PLOTTABLE = ("flush-thresholds",)


def load(name: str) -> Callable[..., dict[str, Any]]:
    module, _, attr = BENCHMARKS[name].partition(":")
    func: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), attr)
    return func
