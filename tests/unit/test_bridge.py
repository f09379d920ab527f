from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from msstore._internal.bridge import Bridge, BridgeMisuse, get_bridge
from msstore.errors import DeadlineExceeded, MsstoreError, OutcomeUnknown

from ._fork import in_child


async def add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    b = Bridge(name="test-bridge")
    yield b
    b.close()


def test_runs_coroutines_on_one_loop_thread(bridge: Bridge) -> None:
    threads = set()

    async def where() -> int:
        threads.add(threading.get_ident())
        return 1

    assert bridge.run(add(2, 3), timeout=1) == 5
    results = []
    workers = [
        threading.Thread(target=lambda: results.append(bridge.run(where(), timeout=1)))
        for _ in range(8)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert results == [1] * 8 and len(threads) == 1
    assert threading.get_ident() not in threads


def test_errors_propagate(bridge: Bridge) -> None:
    async def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        bridge.run(boom(), timeout=1)


def test_timeouts_say_whether_a_write_may_have_landed(bridge: Bridge) -> None:
    start = time.monotonic()
    with pytest.raises(OutcomeUnknown, match="may still land"):
        bridge.run(asyncio.sleep(10), timeout=0.2, write=True, what="put k")
    with pytest.raises(DeadlineExceeded, match=r"no answer within 0\.2 s") as info:
        bridge.run(asyncio.sleep(10), timeout=0.2, what="get k")
    assert info.value.limit == 0.2 and info.value.retryable
    assert time.monotonic() - start < 2
    assert bridge.run(add(1, 1), timeout=1) == 2  # the loop is still fine


def test_calling_from_a_running_loop_raises_instead_of_deadlocking(bridge: Bridge) -> None:
    async def inside() -> None:
        bridge.run(add(1, 2), timeout=1)

    with pytest.raises(BridgeMisuse, match=r"asyncio\.to_thread"):
        asyncio.run(inside())


def test_calling_from_the_loop_thread_raises(bridge: Bridge) -> None:
    async def reentrant() -> str:
        try:
            bridge.run(add(1, 2), timeout=1)
        except BridgeMisuse as err:
            return str(err)
        return "no error"

    assert "own event-loop thread" in bridge.run(reentrant(), timeout=2)


def test_close_drains_pending_work(bridge: Bridge) -> None:
    done = threading.Event()

    async def slow() -> None:
        await asyncio.sleep(0.3)
        done.set()

    bridge.submit(slow())
    bridge.close(grace=2)
    assert done.is_set()
    with pytest.raises(MsstoreError, match="closed"):
        bridge.run(add(1, 1), timeout=1)


def test_fork_gets_a_fresh_bridge() -> None:
    parent = get_bridge()
    assert parent.run(add(1, 1), timeout=1) == 2

    def fresh() -> bool:  # the parent's loop thread does not exist in the child
        child = get_bridge()
        return child is not parent and child.run(add(20, 22), timeout=2) == 42

    assert in_child(fresh)
    assert get_bridge() is parent
