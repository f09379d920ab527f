"""Outbox events onto JetStream: the relay's :class:`~msstore.coordination.EventSink`.

A batch is one crossing into the connection's loop. Events are published as JetStream requests
(``Nats-Msg-Id`` = the row's ``msg_id``, ``Msstore-Outbox-Id`` = its id) in rounds: each round
sends the next event of every subject in the batch at once and awaits their acknowledgements
together, so an event goes out only once the one before it on its subject is stored. A subject
whose event was not confirmed stops there for this batch (its later events wait with it): one
lost in a dropped connection can never be overtaken by a later one that landed, and each
subject's events reach the stream in outbox order. What each event came to:

* an ack: :class:`Published` (``duplicate`` when the stream already had that id in its window);
* a refusal that repeating cannot change (the stream's size limit, a payload over the server's
  ``max_payload``): :class:`Failed`, with the server's words;
* no responder: either no stream captures the subject (asked once per subject of the batch:
  :class:`Failed` if JetStream answers that none does) or JetStream is away (:class:`Retry`);
* no ack in time, a lost connection, any other JetStream error: :class:`Retry`.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any, Final

import nats.errors
import orjson
from nats.aio.msg import Msg

from msstore.coordination import (
    EventSinkBase,
    Failed,
    OutboxEvent,
    Outcome,
    Published,
    Retry,
    uncaptured,
)
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


class JetStreamSink(EventSinkBase):
    """Publishes outbox events to JetStream through ``client`` (see the module docstring).
    ``timeout``: how long a batch waits for its acknowledgements (default: the client's
    request timeout); ``owns_client``: :meth:`close` closes the client too."""

    def __init__(
        self, client: NatsClient, *, timeout: float | None = None, owns_client: bool = False
    ) -> None:
        self.client = client
        self._owns_client = owns_client
        self.timeout = float(timeout or client.config.request_timeout)
        self._max_payload = int(client.server_info.get("max_payload", 1024 * 1024))

    @property
    def max_payload(self) -> int:
        return self._max_payload - HEADER_ALLOWANCE

    def __repr__(self) -> str:
        return f"JetStreamSink({self.client!r})"

    def _publish(self, events: Sequence[OutboxEvent]) -> list[Outcome]:
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
            outcomes: list[Outcome | None] = [None] * len(events)
            lines: dict[str, collections.deque[int]] = {}
            for i, event in enumerate(events):
                lines.setdefault(event.subject, collections.deque()).append(i)
            while lines:  # one round: the next event of every subject, all in flight at once
                heads = [line.popleft() for line in lines.values()]
                replies = await c.requests.request_many(
                    [requests[i] for i in heads], timeout=timeout
                )
                for i, reply in zip(heads, replies, strict=True):
                    outcome = _ack(reply, timeout)
                    if outcome is None:
                        outcome = await _no_responders(c, events[i].subject, timeout)
                    outcomes[i] = outcome
                    if isinstance(outcome, Retry):  # the rest of its subject waits behind it
                        for j in lines.pop(events[i].subject):
                            outcomes[j] = Retry(f"behind an unpublished event: {outcome.reason}")
                lines = {s: line for s, line in lines.items() if line}
            return [o if o is not None else Retry("not sent") for o in outcomes]

        # Each round may wait out the ack timeout; a round stopped by a timeout ends its subject.
        rounds = max(collections.Counter(e.subject for e in events).values())
        try:
            return self.client.run(
                send, write=True, what="publish outbox events", timeout=timeout * rounds + 2.0
            )
        except MsstoreError as err:  # the batch never got through (a bridge or loop failure)
            return [Retry(str(err))] * len(events)

    def _reachable(self) -> bool:
        async def ping(c: Conn) -> bool:
            if not c.nc.is_connected:
                return False
            await c.nc.flush(timeout=1)
            return True

        try:
            return self.client.run(ping, write=False, what="ping NATS", timeout=2.0)
        except MsstoreError:
            return False

    def _release(self) -> None:
        if self._owns_client:
            self.client.close()


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
    return uncaptured(subject)
