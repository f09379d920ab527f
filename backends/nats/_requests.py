"""Request/reply on nats-py's response inbox, at the cost of one awaited future per request.

``Client.request`` wraps each reply future in ``asyncio.wait_for``: a timer, a second future
and a done callback per request, and one more event-loop pass before the caller resumes. On a
small machine that is a tenth of a KV put's client time. :class:`Requests` publishes to the
same wildcard inbox subscription nats-py keeps (its ``_resp_map``, keyed by the reply token, is
where nats-py's own callback delivers replies) and awaits the reply future itself. One timer
per connection, moved only when a request's deadline is earlier than its own, fails requests
that outlive their timeout with nats-py's ``TimeoutError``, as ``Client.request`` would
(:class:`~msstore._internal.timers.EarliestTimer`).

The inbox internals are nats-py's (2.x): if a release renames them, :class:`Requests` falls
back to ``Client.request`` (checked once per connection), so a nats-py upgrade costs speed,
never correctness.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from msstore.spi import EarliestTimer

__all__ = ["Requests"]

NO_RESPONDERS: Final = "503"


class Requests:
    """The request/reply path of one connection (bound to the loop it runs on)."""

    __slots__ = ("_lean", "_loop", "_nc", "_pending", "_prefix", "_watch")

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._lean = all(hasattr(nc, a) for a in ("_resp_map", "_resp_sub_prefix", "_nuid"))
        self._prefix = ""
        self._pending: dict[str, tuple[float, asyncio.Future[Msg]]] = {}
        self._watch = EarliestTimer(self._expire)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def request(
        self,
        subject: str,
        payload: bytes,
        *,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> Msg:
        """What ``nc.request(subject, payload, timeout=..., headers=...)`` returns or raises."""
        nc = self._nc
        if not self._lean:
            return await nc.request(subject, payload, timeout=timeout, headers=headers)
        if not self._prefix:
            await self._ready()
        loop = self._loop
        assert loop is not None
        token = nc._nuid.next().decode()
        future: asyncio.Future[Msg] = loop.create_future()
        deadline = loop.time() + timeout
        nc._resp_map[token] = future
        self._pending[token] = (deadline, future)
        self._watch.at_most(loop, deadline)
        try:
            await nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
            msg = await future
        finally:
            nc._resp_map.pop(token, None)
            del self._pending[token]
        if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
            raise nats.errors.NoRespondersError
        return msg

    async def request_many(
        self, requests: Sequence[tuple[str, bytes, dict[str, str] | None]], *, timeout: float
    ) -> list[Msg | BaseException]:
        """Every request sent before any reply is awaited (one flush for the lot), each reply
        or its error in order: what ``request`` would return or raise, one per request."""
        nc = self._nc
        if not self._lean:
            return await asyncio.gather(
                *(nc.request(s, p, timeout=timeout, headers=h) for s, p, h in requests),
                return_exceptions=True,
            )
        await self._ready()
        loop = self._loop
        assert loop is not None
        deadline = loop.time() + timeout
        tokens: list[str] = []
        futures: list[asyncio.Future[Msg]] = []
        for _ in requests:
            token = nc._nuid.next().decode()
            future: asyncio.Future[Msg] = loop.create_future()
            nc._resp_map[token] = future
            self._pending[token] = (deadline, future)
            tokens.append(token)
            futures.append(future)
        self._watch.at_most(loop, deadline)
        try:
            for (subject, payload, headers), token, future in zip(
                requests, tokens, futures, strict=True
            ):
                try:
                    await nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
                except Exception as err:  # this one did not go out (too big, connection closed)
                    future.set_exception(err)
            replies = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            for token in tokens:
                nc._resp_map.pop(token, None)
                self._pending.pop(token, None)
        return [
            nats.errors.NoRespondersError()
            if isinstance(r, Msg) and r.headers and r.headers.get("Status") == NO_RESPONDERS
            else r
            for r in replies
        ]

    async def _ready(self) -> None:
        """The inbox subscription and this connection's loop, set up on first use."""
        if not self._prefix:
            nc = self._nc
            if not nc._resp_sub_prefix:
                await nc._init_request_sub()
            assert nc._resp_sub_prefix is not None
            self._prefix = nc._resp_sub_prefix.decode()
            self._loop = asyncio.get_running_loop()

    def _expire(self) -> None:
        """The watch timer: fail the requests past their deadline, wait for the next one."""
        loop = self._loop
        assert loop is not None
        now = loop.time()
        earliest: float | None = None
        for deadline, future in list(self._pending.values()):
            if deadline <= now:
                if not future.done():
                    future.set_exception(nats.errors.TimeoutError())
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._watch.at_most(loop, earliest)
