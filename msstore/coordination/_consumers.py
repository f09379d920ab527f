"""Consumers of relayed events: a handler per event, explicit acks, redelivery with backoff, a
dead-letter subject after the last attempt, and the provisioned consumers as presets.

:func:`subscribe` is the sync entry point (the NATS backend does the work, on a thread of its
own). A handler that returns acks its event; one that raises has it redelivered after
``backoff[attempt - 1]`` seconds (the last delay repeats), and after ``max_deliver`` attempts the
event goes to ``<dead_letter>.<stream>.<durable>`` (the ``DEAD_LETTERS`` stream keeps it) with the
error in its headers, and is terminated. Each event carries its outbox id and ``msg_id``, and a
subscription skips (and acks) an event whose ``msg_id`` it handled recently, so a redelivery
after a lost ack does not run the handler twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import attrs
import orjson

from msstore.errors import InvalidArgument
from msstore.spi import check_many

from ._outbox import check_subject
from ._provisioning import DEFAULT, ConsumerSpec

__all__ = [
    "DEAD_LETTER_PREFIX",
    "PRESETS",
    "ConsumerPlan",
    "Event",
    "EventSource",
    "Handler",
    "Preset",
    "Subscription",
    "check_backoff",
    "check_filter",
    "redelivery_delay",
    "subscribe",
]

DEAD_LETTER_PREFIX = "msstore.dead"
"""Where dead letters go: <prefix>.<stream>.<durable>."""


@attrs.frozen(kw_only=True)
class Event:
    """One delivered event. ``delivered``: which attempt this is (1 for the first);
    ``outbox_id`` and ``msg_id``: the outbox row it came from (``None`` for a message that
    was not relayed by msstore)."""

    subject: str
    data: bytes
    stream: str
    stream_seq: int
    delivered: int
    outbox_id: int | None
    msg_id: str | None
    headers: Mapping[str, str] = attrs.field(factory=dict)

    def json(self) -> Any:
        """The payload, decoded as JSON."""
        return orjson.loads(self.data)


Handler = Callable[[Event], None]
"""A consumer's function: called with each event; returning acks it, raising retries it."""


@attrs.frozen(kw_only=True)
class Preset:
    """A named consumer: where it reads and how it acks.
    ``subject``: the filter (``None``: every subject of the stream)."""

    stream: str
    subject: str | None
    durable: str | None
    ack: Literal["explicit", "none"] = "explicit"
    deliver: Literal["all", "last", "new", "last_per_subject"] = "all"
    ack_wait: float = 30.0
    max_deliver: int = 5
    max_ack_pending: int = 1000
    batch: int = 100


def _from_spec(spec: ConsumerSpec) -> Preset:
    """A provisioned consumer as a preset (unlimited settings get the subscription's defaults)."""
    return Preset(
        stream=spec.stream,
        subject=spec.filter_subject,
        durable=None if spec.kind == "ephemeral" else spec.name,
        ack="none" if spec.ack_policy == "none" else "explicit",
        deliver=spec.deliver_policy,
        ack_wait=spec.ack_wait,
        max_deliver=spec.max_deliver if spec.max_deliver > 0 else 5,
        max_ack_pending=spec.max_ack_pending if spec.max_ack_pending > 0 else 1000,
        batch=spec.max_batch or 100,
    )


# The consumers `msstore provision` creates, so a preset binds to the provisioned consumer.
PRESETS: Mapping[str, Preset] = {c.name: _from_spec(c) for c in DEFAULT.consumers}
"""The consumers msstore provision creates, by name, for subscribe(preset=...)."""


@attrs.frozen(kw_only=True)
class ConsumerPlan:
    """A checked subscription, what an :class:`EventSource` runs: the consumer (``preset``:
    where it reads and how it acks), the delays before each redelivery (``backoff``; the last
    repeats), the subject dead letters go to (``dead_letter``: ``<prefix>.<stream>.<durable>``),
    how long one fetch waits (``fetch_wait``) and how many handled ``msg_id`` values are
    remembered to skip duplicates (``remember``)."""

    preset: Preset
    backoff: tuple[float, ...]
    dead_letter: str
    fetch_wait: float
    remember: int


class Subscription(Protocol):
    """A running consumer; stop it (or leave its ``with`` block) to end it."""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop fetching, let the handler finish the event in hand (up to ``timeout`` s)."""
        ...

    def stats(self) -> dict[str, int]:
        """handled, failed (handler errors), dead_lettered, duplicates (skipped), batches."""
        ...

    def wait_idle(self, timeout: float) -> bool:
        """Block until a fetch came back empty (everything so far handled); False on timeout."""
        ...

    def __enter__(self) -> Subscription: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class EventSource(Protocol):
    """Where :func:`subscribe` reads events: a server with streams. The NATS backend's
    ``NatsClient`` is one (a JetStream pull consumer on a thread of its own)."""

    def open_subscription(self, handler: Handler, plan: ConsumerPlan) -> Subscription:
        """Start consuming ``plan.preset.stream``: ``handler`` per event; an event it raises on
        comes again after ``plan.backoff[attempt - 1]`` seconds, and after
        ``plan.preset.max_deliver`` attempts goes to ``plan.dead_letter`` and is terminated;
        an event whose ``msg_id`` was among the last ``plan.remember`` handled is acked
        without running the handler. Return once the consumer is ready (raise if it cannot
        be)."""
        ...


def check_backoff(backoff: Sequence[float]) -> tuple[float, ...]:
    delays = check_many(backoff, field="backoff", of="seconds")
    if not delays:
        raise InvalidArgument("backoff must be a non-empty list of seconds, got []")
    for delay in delays:
        if (
            isinstance(delay, bool)
            or not isinstance(delay, (int, float))
            or not math.isfinite(delay)
            or delay < 0
        ):
            raise InvalidArgument(f"backoff delays must be finite seconds >= 0, got {delay!r}")
    return tuple(float(d) for d in delays)


def redelivery_delay(attempt: int, backoff: Sequence[float]) -> float:
    """How long after failed attempt ``attempt`` (1-based) the event comes again."""
    return backoff[min(attempt, len(backoff)) - 1]


def subscribe(
    client: EventSource,
    handler: Handler,
    *,
    preset: str | None = None,
    stream: str | None = None,
    subject: str | None = None,
    durable: str | None = None,
    max_deliver: int | None = None,
    backoff: Sequence[float] = (1.0, 5.0, 30.0),
    dead_letter: str = DEAD_LETTER_PREFIX,
    batch: int | None = None,
    ack_wait: float | None = None,
    fetch_wait: float = 1.0,
    remember: int = 10_000,
) -> Subscription:
    """Run ``handler`` on every event of ``stream`` matching ``subject`` (module docstring),
    read from ``client`` (an :class:`EventSource`: the NATS backend's ``NatsClient``).

    ``preset``: one of :data:`PRESETS` (its settings are the defaults of the others);
    ``durable``: the consumer's name (its position survives restarts; ``None``: an ephemeral
    consumer); ``remember``: how many handled ``msg_id`` values are kept to skip duplicates.
    """
    base = _preset(preset, stream, subject)
    settings = attrs.evolve(
        base,
        stream=stream or base.stream,
        subject=subject or base.subject,
        durable=durable if durable is not None or preset is None else base.durable,
        max_deliver=base.max_deliver if max_deliver is None else max_deliver,
        batch=base.batch if batch is None else batch,
        ack_wait=base.ack_wait if ack_wait is None else ack_wait,
    )
    _check(settings, fetch_wait=fetch_wait, remember=remember)
    check_subject(dead_letter)
    if not callable(handler):
        raise InvalidArgument(f"handler must be callable, got {handler!r}")
    plan = ConsumerPlan(
        preset=settings,
        backoff=check_backoff(backoff),
        dead_letter=f"{dead_letter}.{settings.stream}.{settings.durable or 'ephemeral'}",
        fetch_wait=fetch_wait,
        remember=remember,
    )
    if not isinstance(client, EventSource):
        raise InvalidArgument(
            f"subscribe reads from an event source such as a NatsClient, got {client!r}"
        )
    return client.open_subscription(handler, plan)


def _preset(name: str | None, stream: str | None, subject: str | None) -> Preset:
    if name is not None:
        if name not in PRESETS:
            raise InvalidArgument(
                f"unknown preset {name!r}", hint=f"presets: {', '.join(sorted(PRESETS))}"
            )
        return PRESETS[name]
    if not stream or not subject:
        raise InvalidArgument("subscribe needs a preset, or both stream and subject")
    return Preset(stream=stream, subject=subject, durable=None)


def check_filter(subject: str) -> str:
    """A consumer's subject filter: NATS tokens, ``*`` for one token, ``>`` only last."""
    tokens = subject.split(".") if type(subject) is str else [""]
    if (
        not all(tokens)
        or any(c.isspace() for c in subject)
        or any(t == ">" for t in tokens[:-1])
        or any(("*" in t or ">" in t) and len(t) > 1 for t in tokens)
    ):
        raise InvalidArgument(
            f"subject filter {subject!r} is not a NATS subject",
            hint="dot-separated tokens; '*' matches one token, '>' the rest (last only)",
        )
    return subject


def _check(p: Preset, *, fetch_wait: float, remember: int) -> None:
    if p.subject is not None:
        check_filter(p.subject)
    if type(p.max_deliver) is not int or p.max_deliver < 1:
        raise InvalidArgument(f"max_deliver must be an int >= 1, got {p.max_deliver!r}")
    if type(p.batch) is not int or not 1 <= p.batch <= 10_000:
        raise InvalidArgument(f"batch must be an int from 1 to 10,000, got {p.batch!r}")
    if type(remember) is not int or remember < 0:
        raise InvalidArgument(f"remember must be an int >= 0, got {remember!r}")
    for name, value in (("ack_wait", p.ack_wait), ("fetch_wait", fetch_wait)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InvalidArgument(f"{name} must be seconds > 0, got {value!r}")
    if p.durable is not None and (
        not p.durable or any(c in p.durable for c in " .*>\t\n") or len(p.durable) > 255
    ):
        raise InvalidArgument(
            f"durable must be 1-255 characters without spaces, '.', '*' or '>', got {p.durable!r}"
        )
