"""The sync/async bridge: blocking calls into asyncio drivers (nats-py) on one background loop.

One event loop runs in one daemon thread per process (:func:`get_bridge`). A blocking call
submits a coroutine and waits for its result; batch APIs submit one coroutine per batch, so the
thread hop is paid once per batch, not per key.

Rules it enforces:

* Calling from the bridge's own loop thread, or from any thread that is running an event loop,
  raises :class:`BridgeMisuse` at once instead of deadlocking. Async code should call msstore
  through ``asyncio.to_thread``.
* Every call has a timeout. A *write* that times out raises
  :class:`~msstore.errors.OutcomeUnknown` (it may still land: nats-py buffers it and sends it
  after a reconnect); a read raises :class:`~msstore.errors.DeadlineExceeded` (as a read that
  PostgreSQL did not answer in time does).
* After ``fork()`` the child gets a fresh bridge on first use (the parent's loop thread does not
  exist there).
* :meth:`Bridge.close` (also run at interpreter exit) lets pending work finish, up to a grace
  period, before it stops the loop.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from msstore.errors import (
    BridgeMisuse,
    ConnectionFailed,
    DeadlineExceeded,
    MsstoreError,
    OutcomeUnknown,
    StoreClosed,
)

__all__ = ["Bridge", "BridgeMisuse", "get_bridge", "timed_out"]

T = TypeVar("T")
log = logging.getLogger("msstore.spi.bridge")


def timed_out(what: str, limit: float, *, write: bool) -> MsstoreError:
    """The error for a call that got no answer within ``limit`` seconds: ``OutcomeUnknown``
    for a write (it may still land), ``DeadlineExceeded`` for a read (nothing changed)."""
    text = f"{what}: no answer within {limit:g} s"
    if write:
        return OutcomeUnknown(
            text, limit=limit, hint="the write may still land; re-read before writing again"
        )
    return DeadlineExceeded(
        text, limit=limit, hint="the server may be down or overloaded; the read can be repeated"
    )


class Bridge:
    """One asyncio loop on a daemon thread, and blocking calls into it."""

    def __init__(self, *, name: str = "msstore-bridge") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The bridge's loop, started on first use."""
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._closed:
                raise StoreClosed("the msstore bridge is closed", hint="open a new store")
            if self._loop is None:
                ready = threading.Event()
                loop = asyncio.new_event_loop()

                def main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def _check_caller(self) -> None:
        if self._thread is not None and threading.get_ident() == self._thread.ident:
            raise BridgeMisuse(
                "a blocking msstore call was made on the bridge's own event-loop thread",
                hint="callbacks running on that loop must not call blocking msstore APIs",
            )
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        raise BridgeMisuse(
            "a blocking msstore call was made from inside a running event loop",
            hint="call it through asyncio.to_thread(...) from async code",
        )

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop without waiting (fire-and-track)."""
        self._check_caller()
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        timeout: float,
        write: bool = False,
        what: str = "operation",
    ) -> T:
        """Run ``coro`` on the loop and return its result, within ``timeout`` seconds."""
        try:
            self._check_caller()
            loop = self.loop
        except MsstoreError:
            coro.close()
            raise
        # The lean form of run_coroutine_threadsafe: one call_soon_threadsafe, a task whose
        # done-callback releases a plain lock. The thread hop is most of a sync call's overhead
        # (a lock ping-pong between two threads costs ~50 us on a small VM), so nothing else
        # (no chained concurrent Future, no wrapper coroutine) is added to it.
        call = _Call()

        def start() -> None:
            task = loop.create_task(coro)
            timer = loop.call_later(timeout, call.expire, task)
            task.add_done_callback(lambda t: call.finish(t, timer))

        loop.call_soon_threadsafe(start)
        if not call.done.acquire(timeout=timeout + 5.0):  # only a wedged loop gets here
            call.timed_out = True
        if call.timed_out:
            raise timed_out(what, timeout, write=write)
        task = call.task
        assert task is not None
        if task.cancelled():
            raise ConnectionFailed(f"{what}: cancelled (the bridge is closing)")
        exc = task.exception()
        if exc is not None:
            raise exc
        return task.result()  # type: ignore[no-any-return]

    def close(self, *, grace: float = 5.0) -> None:
        """Let pending tasks finish (up to ``grace`` seconds), then stop the loop."""
        with self._lock:
            loop, self._loop = self._loop, None
            thread, self._thread = self._thread, None
            self._closed = True
        if loop is None or thread is None or not thread.is_alive():
            return

        async def drain() -> None:
            current = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not current]
            if pending:
                _, late = await asyncio.wait(pending, timeout=grace)
                for task in late:
                    task.cancel()
                if late:
                    log.warning(
                        "msstore bridge: %d task(s) still pending at close were cancelled",
                        len(late),
                    )

        if threading.get_ident() != thread.ident:
            with contextlib.suppress(TimeoutError, concurrent.futures.TimeoutError, RuntimeError):
                asyncio.run_coroutine_threadsafe(drain(), loop).result(grace + 1.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(grace + 1.0)
        if not thread.is_alive():
            loop.close()


class _Call:
    """One blocking call's rendezvous between the caller and the loop thread."""

    __slots__ = ("done", "task", "timed_out")

    def __init__(self) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.task: asyncio.Task[Any] | None = None
        self.timed_out = False

    def expire(self, task: asyncio.Task[Any]) -> None:
        self.timed_out = True
        task.cancel()

    def finish(self, task: asyncio.Task[Any], timer: asyncio.TimerHandle) -> None:
        timer.cancel()
        self.task = task
        self.done.release()


_bridge: Bridge | None = None
_bridge_lock = threading.Lock()


def get_bridge() -> Bridge:
    """The process-wide bridge (a new one after ``fork()`` or after it was closed)."""
    global _bridge  # noqa: PLW0603 - one bridge per process is the point
    bridge = _bridge
    if bridge is not None and not bridge._closed:
        return bridge
    with _bridge_lock:
        if _bridge is None or _bridge._closed:
            _bridge = Bridge()
        return _bridge


def _after_fork_in_child() -> None:
    global _bridge  # noqa: PLW0603
    global _bridge_lock  # noqa: PLW0603
    _bridge = None  # the parent's loop thread does not exist in the child
    _bridge_lock = threading.Lock()


def _close_at_exit() -> None:
    if _bridge is not None:
        _bridge.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)
