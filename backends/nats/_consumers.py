"""A JetStream pull consumer driving a sync handler (see :mod:`msstore.coordination._consumers`).

The subscription's thread owns its consumer: it fetches a batch (one crossing into its
connection's loop), calls the handler on each event in order, then settles the whole batch in
one more crossing: acks, naks with the backoff delay, dead letters (published with JetStream's
ack, then the original terminated; a dead letter that cannot be stored is nak'ed instead, so
nothing is dropped). The consumer's own ``max_deliver`` is left unlimited: the subscription
counts attempts (``num_delivered``) and dead-letters the last one itself.
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
import weakref
from typing import Any, Final, Self

import nats.errors
from nats.aio.msg import Msg
from nats.js import api

from msstore.coordination import ConsumerPlan, Event, Handler, redelivery_delay
from msstore.errors import MsstoreError

from ._client import Conn, NatsClient
from ._events import OUTBOX_ID_HEADER

__all__ = ["NatsSubscription"]

log = logging.getLogger("msstore.backends.nats.consumers")
REASON_LIMIT: Final = 500  # characters of a handler's error kept in a dead letter's headers

Settle = tuple[str, Msg, float, str]  # (ack | nak | dead, message, delay, reason)


def _event(msg: Msg, stream: str) -> Event:
    headers = dict(msg.headers or {})
    meta = msg.metadata
    outbox = headers.get(OUTBOX_ID_HEADER)
    return Event(
        subject=msg.subject,
        data=msg.data,
        stream=meta.stream or stream,
        stream_seq=meta.sequence.stream if meta.sequence else 0,
        delivered=meta.num_delivered or 1,
        outbox_id=int(outbox) if outbox and outbox.isdigit() else None,
        msg_id=headers.get("Nats-Msg-Id"),
        headers=headers,
    )


class NatsSubscription:
    """One consumer on one thread (``msstore-consumer-<name>``)."""

    def __init__(self, client: NatsClient, handler: Handler, plan: ConsumerPlan) -> None:
        self.client = client
        self.handler = handler
        self.settings = plan.preset
        self.backoff = plan.backoff
        self.dead_letter = plan.dead_letter
        self.fetch_wait = plan.fetch_wait
        self._remember = plan.remember
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._idle_count = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._counts = collections.Counter[str]()
        self._thread = threading.Thread(
            target=self._run,
            name=f"msstore-consumer-{plan.preset.durable or 'ephemeral'}",
            daemon=True,
        )
        self._psub: Any = None

    def start(self) -> Self:
        _running.add(self)
        self._thread.start()
        self._ready.wait(self.client.config.connect_timeout * 3 + 10)
        if self._error is not None:
            raise self._error
        return self

    def _config(self) -> api.ConsumerConfig:
        s = self.settings
        explicit = s.ack == "explicit"
        return api.ConsumerConfig(
            durable_name=s.durable,
            ack_policy=api.AckPolicy.EXPLICIT if explicit else api.AckPolicy.NONE,
            deliver_policy=api.DeliverPolicy(s.deliver),
            ack_wait=s.ack_wait if explicit else None,
            max_deliver=-1 if explicit else None,
            max_ack_pending=s.max_ack_pending if explicit else None,
            filter_subject=s.subject,
            inactive_threshold=None if s.durable else 60.0,
        )

    def _subscribe(self) -> None:
        s = self.settings

        async def make(c: Conn) -> Any:
            return await c.js.pull_subscribe(
                s.subject or "", durable=s.durable, stream=s.stream, config=self._config()
            )

        self._psub = self.client.run(make, write=False, what=f"subscribe to {s.stream}")

    def _run(self) -> None:
        try:
            self._subscribe()
        except BaseException as err:
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        while not self._stop.is_set() and not self.client.closing:
            try:
                messages = self._fetch()
                if not messages:
                    with self._idle:
                        self._idle_count += 1
                        self._idle.notify_all()
                    continue
                self._settle([self._handle(m) for m in messages])
                self._counts["batches"] += 1
            except MsstoreError as err:  # the server is away: nats-py reconnects; look again
                log.warning("consumer %s: %s", self.settings.durable or "ephemeral", err)
                self._stop.wait(0.5)
        self._unsubscribe()

    def _unsubscribe(self) -> None:
        """Stop reading (a durable consumer keeps its position on the server)."""
        psub = self._psub

        async def unsubscribe(c: Conn) -> None:
            await psub.unsubscribe()

        try:
            self.client.run(unsubscribe, write=False, what="unsubscribe")
        except MsstoreError as err:
            log.info("consumer unsubscribe: %s", err)

    def _fetch(self) -> list[Msg]:
        psub, batch, wait = self._psub, self.settings.batch, self.fetch_wait

        async def fetch(c: Conn) -> list[Msg]:
            try:
                msgs: list[Msg] = await psub.fetch(batch, timeout=wait)
            except nats.errors.TimeoutError:
                return []
            return msgs

        return self.client.run(fetch, write=False, what="fetch events", timeout=wait + 5.0)

    def _handle(self, msg: Msg) -> Settle:
        event = _event(msg, self.settings.stream)
        if event.msg_id is not None and event.msg_id in self._recent:
            self._counts["duplicates"] += 1
            return ("ack", msg, 0.0, "")
        try:
            self.handler(event)
        except Exception as err:  # the handler's failure: redeliver, or give up after the last
            self._counts["failed"] += 1
            reason = f"{type(err).__name__}: {err}"[:REASON_LIMIT]
            log.info(
                "consumer handler failed on %s (attempt %d): %s",
                msg.subject,
                event.delivered,
                reason,
            )
            if self.settings.ack == "none":
                return ("none", msg, 0.0, reason)
            if event.delivered >= self.settings.max_deliver:
                return ("dead", msg, 0.0, reason)
            return ("nak", msg, redelivery_delay(event.delivered, self.backoff), reason)
        self._counts["handled"] += 1
        if event.msg_id is not None and self._remember:
            self._recent[event.msg_id] = None
            if len(self._recent) > self._remember:
                self._recent.popitem(last=False)
        return ("ack", msg, 0.0, "")

    def _settle(self, verdicts: list[Settle]) -> None:
        if self.settings.ack == "none":
            return
        dead_letter, last_delay = self.dead_letter, self.backoff[-1]

        async def settle(c: Conn) -> int:
            dead = 0
            for action, msg, delay, reason in verdicts:
                if action == "ack":
                    await msg.ack()
                elif action == "nak":
                    await msg.nak(delay=delay)
                else:
                    headers = dict(msg.headers or {})
                    headers.update(
                        {
                            "Msstore-Dead-Subject": msg.subject,
                            "Msstore-Dead-Reason": reason,
                            "Msstore-Dead-Attempts": str(msg.metadata.num_delivered),
                        }
                    )
                    if "Nats-Msg-Id" in headers:
                        headers["Nats-Msg-Id"] = "dead-" + headers["Nats-Msg-Id"]
                    try:
                        await c.js.publish(dead_letter, msg.data, headers=headers)
                    except Exception as err:  # keep the event: try again after the last delay
                        log.error("dead letter to %s failed: %s; event kept", dead_letter, err)
                        await msg.nak(delay=last_delay)
                        continue
                    await msg.term()
                    dead += 1
            await c.nc.flush()
            return dead

        self._counts["dead_lettered"] += self.client.run(
            settle, write=True, what="acknowledge events"
        )

    def stats(self) -> dict[str, int]:
        keys = ("handled", "failed", "dead_lettered", "duplicates", "batches")
        return {k: self._counts[k] for k in keys}

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            seen = self._idle_count
            return self._idle.wait_for(lambda: self._idle_count > seen, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        _running.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Subscriptions still running at interpreter exit stop first (their current batch settled),
# before the connections they use are drained and closed.
_running: weakref.WeakSet[NatsSubscription] = weakref.WeakSet()


def _stop_at_exit() -> None:
    for subscription in list(_running):
        try:
            subscription.stop(timeout=5.0)
        except BaseException as err:  # interpreter shutdown: report, never raise
            log.debug("stopping a subscription at exit: %r", err)


atexit.register(_stop_at_exit)
