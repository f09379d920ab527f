from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from msstore._internal.bridge import BridgeMisuse
from msstore._internal.local_loops import LocalLoop, LocalLoops
from msstore.errors import DeadlineExceeded, MsstoreError, OutcomeUnknown
from msstore.testing import eventually

from ._fork import in_child


class Conn:
    """A stand-in for a connection: records which thread and loop it lives on."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.ticks = 0

        async def heartbeat() -> None:  # a background task, like nats-py's read loop
            while True:
                await asyncio.sleep(0.001)
                self.ticks += 1

        self.task = self.loop.create_task(heartbeat())


async def opener() -> Conn:
    return Conn()


async def closer(conn: Conn) -> None:
    conn.closed = True


@pytest.fixture
def loops() -> Any:
    pool: LocalLoops[Conn] = LocalLoops(
        opener=opener, closer=closer, open_timeout=2, tick_interval=0.05
    )
    yield pool
    pool.close()


async def whoami(conn: Conn) -> tuple[int, int]:
    await asyncio.sleep(0)
    return conn.thread, threading.get_ident()


def test_each_thread_drives_its_own_loop_and_connection(loops: Any) -> None:
    owner, runner = loops.run(whoami, timeout=1, write=False, what="t")
    assert owner == runner == threading.get_ident()  # no thread hop
    seen: list[tuple[int, int]] = []
    together = threading.Barrier(4)  # all alive at once, so no thread ident is reused

    def call() -> None:
        seen.append(loops.run(whoami, timeout=1, write=False, what="t"))
        together.wait()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(o == r for o, r in seen) and len({o for o, _ in seen}) == 4


def test_idle_loops_are_ticked_and_dead_threads_cleaned_up(loops: Any) -> None:
    conns: list[Conn] = []

    def worker() -> None:
        conns.append(loops.first_state())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    conn = conns[0]
    # the housekeeper closes the exited thread's connection
    eventually(lambda: conn.closed, what="the exited thread's connection closed")
    mine = loops.first_state()
    before = mine.ticks
    eventually(lambda: mine.ticks > before, what="a tick")  # idle, yet its background task ran


def test_a_reused_thread_ident_takes_the_loop_over(loops: Any) -> None:
    for _ in range(20):  # sequential threads: the OS hands idents out again
        t = threading.Thread(target=lambda: loops.run(whoami, timeout=1, write=False, what="t"))
        t.start()
        t.join()
    # Two whole housekeeping passes after the threads ended (the first may have begun before):
    # nothing was closed under a live thread.
    passes = loops.housekeeping_passes
    eventually(lambda: loops.housekeeping_passes >= passes + 2, what="housekeeping")
    errors: list[BaseException] = []

    def again() -> None:
        try:
            _, runner = loops.run(whoami, timeout=1, write=False, what="t")
            assert runner == threading.get_ident()
        except BaseException as err:
            errors.append(err)

    t = threading.Thread(target=again)
    t.start()
    t.join()
    assert errors == []


def test_timeouts_and_errors(loops: Any) -> None:
    async def slow(_: Conn) -> None:
        await asyncio.sleep(5)

    async def boom(_: Conn) -> None:
        raise KeyError("k")

    with pytest.raises(OutcomeUnknown):
        loops.run(slow, timeout=0.1, write=True, what="put")
    with pytest.raises(DeadlineExceeded):
        loops.run(slow, timeout=0.1, write=False, what="get")
    with pytest.raises(KeyError):
        loops.run(boom, timeout=1, write=False, what="x")
    assert loops.run(whoami, timeout=1, write=False, what="t")[0] == threading.get_ident()


def test_a_call_with_an_earlier_deadline_than_the_last_one_still_times_out(loops: Any) -> None:
    """One deadline timer per loop, moved earlier when a call needs it: a call that would
    finish in 3 s with a 0.1 s timeout fails, right after a call with a 30 s timeout."""

    async def three_seconds(_: Conn) -> str:
        await asyncio.sleep(3)
        return "finished"

    assert loops.run(whoami, timeout=30, write=False, what="t")[1] == threading.get_ident()
    with pytest.raises(OutcomeUnknown, match=r"no answer within 0\.1 s"):
        loops.run(three_seconds, timeout=0.1, write=True, what="put")


def test_a_timed_out_call_leaves_the_loop_usable_for_many_more(loops: Any) -> None:
    async def slow(_: Conn) -> None:
        await asyncio.sleep(5)

    async def quick(_: Conn) -> int:
        await asyncio.sleep(0)
        return 1

    with pytest.raises(DeadlineExceeded):
        loops.run(slow, timeout=0.05, write=False, what="get")
    assert sum(loops.run(quick, timeout=1, write=False, what="q") for _ in range(500)) == 500


def test_an_error_raised_by_the_call_comes_out_as_it_is(loops: Any) -> None:
    class Odd(Exception):
        pass

    async def odd(_: Conn) -> None:
        await asyncio.sleep(0)
        raise Odd("kept")

    with pytest.raises(Odd, match="kept"):
        loops.run(odd, timeout=1, write=True, what="w")


def test_calling_from_a_running_loop_raises(loops: Any) -> None:
    async def inside() -> None:
        loops.run(whoami, timeout=1, write=False, what="t")

    with pytest.raises(BridgeMisuse):
        asyncio.run(inside())


def test_closed_pool_refuses_work(loops: Any) -> None:
    conn = loops.first_state()
    loops.close()
    assert conn.closed
    with pytest.raises(MsstoreError, match="closed"):
        loops.run(whoami, timeout=1, write=False, what="t")


def test_fork_starts_without_the_parents_loops(loops: Any) -> None:
    parent_conn = loops.first_state()

    def fresh() -> bool:
        child_conn = loops.first_state()
        return child_conn is not parent_conn and child_conn.loop is not parent_conn.loop

    assert in_child(fresh)
    assert loops.first_state() is parent_conn


def test_closing_a_loop_does_not_wait_forever_for_a_task_that_ignores_its_cancel() -> None:
    local: LocalLoop[None] = LocalLoop(threading.current_thread())
    cancels = 0

    async def stubborn() -> None:  # like a reconnect loop that catches CancelledError
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1

    task = local.loop.create_task(stubborn())
    local.loop.run_until_complete(asyncio.sleep(0))  # (the task starts)
    local.close(None, timeout=0.05)
    assert local.closed and local.loop.is_closed() and cancels == 1 and not task.done()
