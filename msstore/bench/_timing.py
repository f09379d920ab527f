"""Timing helpers the benchmark workloads share."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["rate"]


def rate(n: int, body: Callable[[], object]) -> float:
    """``n`` operations per second, ``body`` doing all ``n`` of them once."""
    start = time.perf_counter()
    body()
    return n / (time.perf_counter() - start)
