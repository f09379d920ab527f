from __future__ import annotations

import pytest

from msstore.conflicts import (
    CRDTMerge,
    LastWriteWins,
    PNCounter,
    RetryPolicy,
    VectorClockResolver,
)
from msstore.errors import InvalidArgument


def test_resolvers_refuse_values_of_another_kind() -> None:
    counter_doc = PNCounter().increment("a").to_doc()
    with pytest.raises(InvalidArgument):
        LastWriteWins("w").apply("k", counter_doc, lambda v: v)
    with pytest.raises(InvalidArgument):
        VectorClockResolver("w").apply("k", counter_doc, lambda v: v)
    with pytest.raises(InvalidArgument):
        CRDTMerge(PNCounter).apply("k", None, lambda c: 5)
    with pytest.raises(InvalidArgument):
        VectorClockResolver("")


def test_retry_policy_defaults_follow_the_reference() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.base, policy.multiplier, policy.cap) == (3, 0.1, 2.0, 5.0)
    assert RetryPolicy.hot_key().attempts > 3
    with pytest.raises(InvalidArgument):
        RetryPolicy(attempts=0)
    with pytest.raises(InvalidArgument):
        RetryPolicy(base=-1)
