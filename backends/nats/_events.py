"""Outbox events onto JetStream: the relay's :class:`~msstore.coordination.EventSink`.

A batch is one crossing into the connection's loop: every event is published at once as a
JetStream request (``Nats-Msg-Id`` = the row's ``msg_id``, ``Msstore-Outbox-Id`` = its id) and
every acknowledgement awaited together. What each event came to:

* an ack: :class:`Published` (``duplicate`` when the stream already had that id in its window);
* a refusal that repeating cannot change (the stream's size limit, a payload over the server's
  ``max_payload``): :class:`Failed`, with the server's words;
* no responder: either no stream captures the subject (asked once per subject of the batch:
  :class:`Failed` if JetStream answers that none does) or JetStream is away (:class:`Retry`);
* no ack in time, a lost connection, any other JetStream error: :class:`Retry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import nats.errors
import orjson
from nats.aio.msg import Msg

from msstore.coordination._outbox import Failed, OutboxEvent, Outcome, Published, Retry
from msstore.errors import MsstoreError

from ._client import Conn, NatsClient

__all__ = ["HEADER_ALLOWANCE", "JetStreamSink"]

# Room left in the server's max_payload for the headers msstore adds (ids, status).
HEADER_ALLOWANCE: Final = 256
# JetStream errors no retry can fix: the message exceeds the stream's max_msg_size.
PERMANENT: Final = frozenset({10054})
OUTBOX_ID_HEADER: Final = "Msstore-Outbox-Id"


def _ack(reply: Msg | BaseException, timeout: float) -> Outcome | None:
    """The outcome of one reply; ``None`` for no responders (resolved per subject later)."""
    if isinstance(reply, BaseException):
        return _unsent(reply, timeout)
    try:
        ack: dict[str, Any] = orjson.loads(reply.data)
    except orjson.JSONDecodeError:
        return Retry(f"unreadable JetStream reply {reply.data[:80]!r}")
    error = ack.get("error")
    if error:
        text = f"JetStream error {error.get('err_code')}: {error.get('description')}"
        return Failed(text) if error.get("err_code") in PERMANENT else Retry(text)
    return Published(str(ack["stream"]), int(ack["seq"]), bool(ack.get("duplicate", False)))


def _unsent(err: BaseException, timeout: float) -> Outcome | None:
    if isinstance(err, nats.errors.NoRespondersError):
        return None
    if isinstance(err, nats.errors.MaxPayloadError):
        return Failed(f"the server refused the message: {err}")
    if isinstance(err, (nats.errors.TimeoutError, TimeoutError)):
        return Retry(f"no JetStream acknowledgement within {timeout:g} s")
    return Retry(f"publish failed: {type(err).__name__}: {err}")


class JetStreamSink:
    """Publishes outbox events to JetStream through ``client`` (see the module docstring).
    ``timeout``: how long a batch waits for its acknowledgements (default: the client's
    request timeout)."""

    def __init__(self, client: NatsClient, *, timeout: float | None = None) -> None:
        self.client = client
        self.timeout = float(timeout or client.config.request_timeout)
        self._max_payload = int(client.server_info.get("max_payload", 1024 * 1024))

    @property
    def max_payload(self) -> int:
        return self._max_payload - HEADER_ALLOWANCE

    def publish_batch(self, events: Sequence[OutboxEvent]) -> list[Outcome]:
        if not events:
            return []
        timeout = self.timeout
        requests = [
            (
                e.subject,
                e.payload,
                {"Nats-Msg-Id": e.msg_id, OUTBOX_ID_HEADER: str(e.outbox_id)},
            )
            for e in events
        ]

        async def send(c: Conn) -> list[Outcome]:
            replies = await c.requests.request_many(requests, timeout=timeout)
            outcomes = [_ack(r, timeout) for r in replies]
            unrouted = {e.subject for e, o in zip(events, outcomes, strict=True) if o is None}
            verdicts = {s: await _no_responders(c, s, timeout) for s in unrouted}
            return [
                verdicts[e.subject] if o is None else o
                for e, o in zip(events, outcomes, strict=True)
            ]

        try:
            return self.client.run(
                send, write=True, what="publish outbox events", timeout=timeout + 2.0
            )
        except MsstoreError as err:  # the batch never got through (a bridge or loop failure)
            return [Retry(str(err))] * len(events)

    def reachable(self) -> bool:
        async def ping(c: Conn) -> bool:
            if not c.nc.is_connected:
                return False
            await c.nc.flush(timeout=1)
            return True

        try:
            return self.client.run(ping, write=False, what="ping NATS", timeout=2.0)
        except MsstoreError:
            return False

    def close(self) -> None:
        """The client is the caller's (closed by whoever opened it)."""


async def _no_responders(c: Conn, subject: str, timeout: float) -> Outcome:
    """No JetStream responder for ``subject``: :class:`Failed` if JetStream says no stream
    captures it, :class:`Retry` if JetStream does not answer (it is away)."""
    try:
        reply = await c.requests.request(
            "$JS.API.STREAM.NAMES", orjson.dumps({"subject": subject}), timeout=timeout
        )
        names = orjson.loads(reply.data).get("streams")
    except Exception as err:  # no answer: JetStream itself is away; the row waits
        return Retry(f"no JetStream responder for {subject} ({type(err).__name__})")
    if names:
        return Retry(f"no JetStream responder for {subject} (stream {names[0]} is not ready)")
    return Failed(f"no stream captures subject {subject}")
