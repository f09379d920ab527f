"""Caller-driven event loops: one private asyncio loop per calling thread, no thread hop.

The shared bridge (:mod:`msstore._internal.bridge`) pays two cross-thread wake-ups per blocking
call; on a small VM a lock ping-pong between two threads alone costs ~50 us, against ~150 us for a
whole JetStream round trip, so a bridged ``put`` cannot get within 15 % of raw nats-py. Here each
thread that calls gets its own loop (and, in the NATS backend, its own connection) and drives it
itself for the length of the call: the I/O happens on the caller's thread, as in raw async code.
A call costs the loop passes an awaited call costs, plus one: the call's task stops the loop as
it ends (``run_until_complete`` would take a pass more, for its done callback), and one deadline
timer per loop bounds every call, moved only when a call's deadline is earlier than its own.

Between calls a thread's loop does not run, so a housekeeping thread *ticks* idle loops every
``tick_interval`` seconds (answering server PINGs, flushing writes buffered during a reconnect,
running timers) and closes the loops of threads that have exited, through the owner's ``close``
coroutine. Before each call, a loop that sat idle, or whose connection has input waiting
(``has_input``, one non-blocking poll), runs a few iterations first, so what happened while
nobody drove it (a server that went away) is seen before a request goes out. A loop is driven
by one thread at a time (its lock); the owner never waits long on a tick. After ``fork()`` the
child starts with no loops (the parent's sockets are not its own).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from msstore.errors import StoreClosed

from .bridge import BridgeMisuse, timed_out
from .timers import EarliestTimer

__all__ = ["LocalLoop", "LocalLoops"]

SETTLE_AFTER_IDLE = 0.002  # seconds without a call before a loop settles its socket events

T = TypeVar("T")
S = TypeVar("S")
log = logging.getLogger("msstore.spi.bridge")


class LocalLoop(Generic[S]):
    """One thread's private loop and the state (a connection) that lives on it."""

    def __init__(self, owner: threading.Thread) -> None:
        self.loop = asyncio.new_event_loop()
        self.lock = threading.Lock()
        self.owner = weakref.ref(owner)
        self.state: S | None = None
        self.last_used = time.monotonic()
        self.closed = False
        self._current: tuple[_Call[Any], asyncio.Task[None]] | None = None
        self._deadline = 0.0  # loop time the current call must end by
        self._watch = EarliestTimer(self._check_deadline)

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        timeout: float,
        write: bool,
        what: str,
        settle: bool = False,
    ) -> T:
        """Run ``coro`` on this thread's loop, driven here until it ends or ``timeout`` seconds
        pass (then ``OutcomeUnknown`` for a ``write``, ``DeadlineExceeded`` otherwise;
        ``what`` names the call). ``StoreClosed`` once the loop is closed."""
        with self.lock:
            if self.closed:
                coro.close()
                raise StoreClosed(f"{what}: the connection is closed", hint="open a new store")
            if settle or time.monotonic() - self.last_used > SETTLE_AFTER_IDLE:
                coro = _settled(coro)
            try:
                return self._drive(coro, timeout)
            except _TimedOut:
                raise timed_out(what, timeout, write=write) from None
            finally:
                self.last_used = time.monotonic()

    def _drive(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` to its end on this loop, within ``timeout`` seconds.

        ``run_until_complete`` costs two loop passes more than an awaited call (one to stop the
        loop from the task's done callback, one in the task an ``asyncio.timeout`` wrapper adds)
        and a timer per call. Here the task stops the loop itself as it ends (the loop leaves
        after the pass it ends in), and one watch timer, moved only when a call's deadline is
        earlier than its own, cancels a call that overruns (see :meth:`_check_deadline`).
        """
        loop = self.loop
        call = _Call(coro)
        task = loop.create_task(call.drive(loop))
        self._current = (call, task)
        self._deadline = loop.time() + timeout
        self._watch.at_most(loop, self._deadline)
        try:
            loop.run_forever()
        finally:
            self._current = None
            if not task.done():  # left early (KeyboardInterrupt in a callback): end it
                task.cancel()
                with contextlib.suppress(BaseException):
                    while not task.done():
                        loop.run_forever()  # the task stops the loop as it ends
        if task.cancelled():
            if call.expired:
                raise _TimedOut
            raise asyncio.CancelledError
        error = task.exception()
        if error is not None:
            if call.expired:
                raise _TimedOut from error
            raise error
        return call.result()

    def _check_deadline(self) -> None:
        """The watch timer: cancel the current call if it is past its deadline, else wait for
        the current call's deadline (or for the next call to set one)."""
        current = self._current
        if current is None:
            return
        if self.loop.time() >= self._deadline:
            current[0].expire(current[1])
        else:
            self._watch.at_most(self.loop, self._deadline)

    def tick(self, seconds: float = 0.005) -> bool:
        """Drive the loop briefly if nobody else is; True if it ran."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if not self.closed:
                self.loop.run_until_complete(asyncio.sleep(seconds))
            return True
        finally:
            self.lock.release()

    def close(
        self, closer: Callable[[S], Coroutine[Any, Any, Any]] | None, timeout: float = 5.0
    ) -> None:
        """Run ``closer`` on the loop's state (its connection), then close the loop; idempotent."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                if closer is not None and self.state is not None:
                    self._drive(closer(self.state), timeout)
            except (Exception, asyncio.CancelledError) as err:  # closing must not raise
                log.info("closing a thread's loop: %s", err)
            finally:
                pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:  # bounded: a task that swallows its cancellation cannot hold close
                    self.loop.run_until_complete(asyncio.wait(pending, timeout=timeout))
                    stuck = [t for t in pending if not t.done()]
                    for task in stuck:  # (said once here, not again when it is collected)
                        task._log_destroy_pending = False  # type: ignore[attr-defined]
                    if stuck:
                        log.info("closing a thread's loop: %d task(s) ignored cancel", len(stuck))
                self.loop.close()


async def _settled(coro: Coroutine[Any, Any, T]) -> T:
    # A few idle iterations first: the selector reports what happened on the socket while the
    # loop was not driven (a server that went away), so a request is queued for the reconnect
    # instead of being written into a dead connection.
    for _ in range(4):
        await asyncio.sleep(0)
    return await coro


class _TimedOut(Exception):
    """A driven call outran its timeout."""


class _Call(Generic[T]):
    """One driven coroutine: it stops the loop as it ends, whatever its outcome."""

    __slots__ = ("_coro", "_value", "expired")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self.expired = False

    async def drive(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self._value = await self._coro
        finally:
            loop.stop()

    def expire(self, task: asyncio.Task[None]) -> None:
        if not task.done():
            self.expired = True
            task.cancel()

    def result(self) -> T:
        return self._value


class LocalLoops(Generic[S]):
    """The per-thread loops of one owner (a connection pool of one per thread).

    ``opener`` builds a thread's state on its own loop (e.g. connects); ``closer`` tears it
    down. :meth:`run` runs a coroutine built from the calling thread's state.
    """

    def __init__(
        self,
        *,
        opener: Callable[[], Coroutine[Any, Any, S]],
        closer: Callable[[S], Coroutine[Any, Any, Any]],
        has_input: Callable[[S], bool] | None = None,
        open_timeout: float,
        tick_interval: float = 2.0,
    ) -> None:
        self._opener = opener
        self._closer = closer
        self._has_input = has_input
        self._open_timeout = open_timeout
        self._tick_interval = tick_interval
        self.housekeeping_passes = 0  # (passes the housekeeper finished: tests wait on it)
        self._lock = threading.Lock()
        self._loops: dict[int, LocalLoop[S]] = {}
        self._closed = False
        self._stop = threading.Event()
        self._housekeeper: threading.Thread | None = None
        _open_pools.add(self)

    def _forget_after_fork(self) -> None:
        """In a forked child: the parent's loops and sockets are not ours."""
        self._loops = {}
        self._housekeeper = None
        self._lock = threading.Lock()

    def _mine(self) -> LocalLoop[S]:
        ident = threading.get_ident()
        local = self._loops.get(ident)
        if local is not None and not local.closed:
            current = threading.current_thread()
            if local.owner() is current:
                return local
            with self._lock:  # a new thread reusing a dead thread's ident: hand the loop over
                if self._loops.get(ident) is local and not local.closed:
                    local.owner = weakref.ref(current)
                    return local
        if self._closed:
            raise StoreClosed("this connection pool is closed", hint="open a new store")
        local = LocalLoop(threading.current_thread())
        try:
            local.state = local.run(
                self._opener(), timeout=self._open_timeout, write=False, what="connect"
            )
        except BaseException:
            local.close(None)
            raise
        with self._lock:
            self._loops[ident] = local
            if self._housekeeper is None:
                self._housekeeper = threading.Thread(
                    target=self._housekeep, daemon=True, name="msstore-loop-housekeeper"
                )
                self._housekeeper.start()
        return local

    def run(
        self, make: Callable[[S], Coroutine[Any, Any, T]], *, timeout: float, write: bool, what: str
    ) -> T:
        """Run ``make(state)`` on the calling thread's loop, within ``timeout`` seconds."""
        if asyncio.events._get_running_loop() is not None:
            raise BridgeMisuse(
                "a blocking msstore call was made from inside a running event loop",
                hint="call it through asyncio.to_thread(...) from async code",
            )
        local = self._mine()
        state = local.state
        assert state is not None
        # Input waiting on an idle loop (a closed socket, say) is handled before the call, so a
        # request is never written into a connection the loop has not yet seen die.
        settle = self._has_input is not None and self._has_input(state)
        return local.run(make(state), timeout=timeout, write=write, what=what, settle=settle)

    def first_state(self) -> S:
        """The calling thread's state (opening it if needed)."""
        local = self._mine()
        assert local.state is not None
        return local.state

    def _housekeep(self) -> None:
        while not self._stop.wait(self._tick_interval):
            self._housekeep_once()
            self.housekeeping_passes += 1

    def _housekeep_once(self) -> None:
        """One pass: close the loops of threads that ended, tick the idle ones."""
        now = time.monotonic()
        with self._lock:
            loops = list(self._loops.items())
        for ident, local in loops:
            with self._lock:  # decided under the lock _mine hands loops over under
                owner = local.owner()
                dead = owner is None or not owner.is_alive()
                if dead and self._loops.get(ident) is local:
                    del self._loops[ident]
            if dead:
                local.close(self._closer)
            elif now - local.last_used >= self._tick_interval:
                local.tick()

    def close(self) -> None:
        """Close every thread's state and loop."""
        self._closed = True
        self._stop.set()
        with self._lock:
            loops, self._loops = list(self._loops.values()), {}
        for local in loops:
            local.close(self._closer)

    def __len__(self) -> int:
        return sum(1 for loop in self._loops.values() if not loop.closed)


# Interpreter exit drains what is still open (writes buffered during a reconnect go out, the
# server sees a clean goodbye), as the bridge does for its loop.
_open_pools: weakref.WeakSet[LocalLoops[Any]] = weakref.WeakSet()


def _close_at_exit() -> None:
    for pool in list(_open_pools):
        try:
            pool.close()
        except BaseException as err:  # interpreter shutdown: report, never raise
            log.debug("closing a loop pool at exit: %r", err)


def _forget_after_fork() -> None:
    for pool in list(_open_pools):
        pool._forget_after_fork()


atexit.register(_close_at_exit)
os.register_at_fork(after_in_child=_forget_after_fork)
