"""``EarliestTimer``: one timer, due by the earliest deadline it was given."""

from __future__ import annotations

import asyncio

import pytest

from msstore._internal.timers import EarliestTimer


def fires_within(deadlines: list[float], limit: float = 5.0) -> int:
    """Give the timer ``deadlines`` (seconds from now), in order; wait (at most ``limit`` s)
    for its callback; return how many times it ran by then."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        fired = asyncio.Event()
        calls = [0]

        def callback() -> None:
            calls[0] += 1
            fired.set()

        timer = EarliestTimer(callback)
        now = loop.time()
        for seconds in deadlines:
            timer.at_most(loop, now + seconds)
        await asyncio.wait_for(fired.wait(), limit)
        return calls[0]

    return asyncio.run(main())


def test_a_later_deadline_leaves_the_earlier_timer_armed() -> None:
    assert fires_within([0.05, 30.0]) == 1


def test_an_earlier_deadline_moves_the_timer() -> None:
    assert fires_within([30.0, 0.05]) == 1


def test_without_an_earlier_deadline_it_waits_for_the_one_it_has() -> None:
    with pytest.raises(TimeoutError):
        fires_within([30.0], limit=0.2)
