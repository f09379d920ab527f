"""The NATS backend's request path (``backends/nats/_requests.py``) against a real server: it
answers, refuses and times out as ``nats-py``'s ``Client.request`` does, without a
``wait_for`` per request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from msstore.backends.nats._requests import Requests

pytestmark = pytest.mark.nats


def on_server(url: str, body: Callable[[Client, Requests], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        nc = await nats.connect(url)
        try:
            return await body(nc, Requests(nc))
        finally:
            await nc.close()

    return asyncio.run(main())


async def echo(nc: Client, subject: str) -> None:
    async def reply(msg: Msg) -> None:
        await msg.respond(b"re:" + msg.data)

    await nc.subscribe(subject, cb=reply)


async def silent(nc: Client, subject: str) -> None:
    async def ignore(msg: Msg) -> None:
        return None

    await nc.subscribe(subject, cb=ignore)


def test_a_request_gets_its_own_reply(msstore_nats_url: str) -> None:
    async def body(nc: Client, requests: Requests) -> list[bytes]:
        await echo(nc, "rq.echo")
        replies = await asyncio.gather(
            *(requests.request("rq.echo", b"%d" % i, timeout=5) for i in range(50))
        )
        return [m.data for m in replies]

    assert on_server(msstore_nats_url, body) == [b"re:%d" % i for i in range(50)]


def test_headers_go_out_with_the_request(msstore_nats_url: str) -> None:
    async def body(nc: Client, requests: Requests) -> bytes:
        async def reply(msg: Msg) -> None:
            await msg.respond((msg.headers or {}).get("X-Test", "none").encode())

        await nc.subscribe("rq.headers", cb=reply)
        msg = await requests.request("rq.headers", b"", timeout=5, headers={"X-Test": "yes"})
        return msg.data

    assert on_server(msstore_nats_url, body) == b"yes"


def test_no_subscriber_is_no_responders(msstore_nats_url: str) -> None:
    async def body(nc: Client, requests: Requests) -> None:
        await requests.request("rq.nobody.home", b"", timeout=5)

    with pytest.raises(nats.errors.NoRespondersError):
        on_server(msstore_nats_url, body)


def test_an_unanswered_request_times_out_and_the_next_one_is_answered(
    msstore_nats_url: str,
) -> None:
    async def body(nc: Client, requests: Requests) -> bytes:
        await silent(nc, "rq.silent")
        await echo(nc, "rq.echo2")
        with pytest.raises(nats.errors.TimeoutError):
            await requests.request("rq.silent", b"", timeout=0.2)
        return (await requests.request("rq.echo2", b"x", timeout=5)).data

    assert on_server(msstore_nats_url, body) == b"re:x"


def test_a_shorter_timeout_is_kept_while_a_longer_one_waits(msstore_nats_url: str) -> None:
    """One timer serves every request: a request with an earlier deadline than the timer's
    moves it, so it fails first although it was sent second."""

    async def body(nc: Client, requests: Requests) -> list[str]:
        await silent(nc, "rq.silent2")
        failed: list[str] = []

        async def ask(name: str, timeout: float) -> None:
            try:
                await requests.request("rq.silent2", b"", timeout=timeout)
            except nats.errors.TimeoutError:
                failed.append(name)

        long = asyncio.create_task(ask("long", 30))
        await asyncio.sleep(0)
        await ask("short", 0.2)
        long.cancel()
        await asyncio.gather(long, return_exceptions=True)
        return failed

    assert on_server(msstore_nats_url, body) == ["short"]


def test_a_client_without_the_inbox_internals_uses_its_own_request() -> None:
    class Plain:
        """Only the public API: what a nats-py that renamed its internals would offer."""

        def __init__(self) -> None:
            self.calls: list[tuple[str, bytes, float, Any]] = []

        async def request(
            self, subject: str, payload: bytes, timeout: float, headers: Any = None
        ) -> str:
            self.calls.append((subject, payload, timeout, headers))
            return "reply"

    plain = Plain()
    requests = Requests(plain)  # type: ignore[arg-type]
    result: object = asyncio.run(requests.request("s", b"p", timeout=2, headers={"h": "v"}))
    assert result == "reply"
    assert plain.calls == [("s", b"p", 2, {"h": "v"})]
