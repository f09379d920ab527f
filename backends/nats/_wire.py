"""The KV wire format of JetStream messages: headers, timestamps, TTLs, entries.

msstore reads KV entries from direct gets, the stream-get API and ordered consumers; each
carries its key, revision, time and operation differently, and :func:`decode_entry` makes one
:class:`~msstore.records.Entry` of any of them. :func:`drain` reads an ordered consumer until it
has caught up (listings, history, the change feed).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Mapping
from typing import Any, Final

import nats.errors
from nats.aio.msg import Msg

from msstore.records import Entry, Operation

from ._client import Conn

__all__ = [
    "EXPECTED_LAST",
    "KV_OP",
    "MARKER_REASON",
    "MSG_TTL",
    "ROLLUP",
    "WRONG_LAST_SEQUENCE",
    "decode_entry",
    "drain",
    "from_raw",
    "operation",
    "timestamp",
    "ttl_headers",
    "ttl_seconds",
]

KV_OP: Final = "KV-Operation"
MARKER_REASON: Final = "Nats-Marker-Reason"  # server-placed markers (2.11+ limit markers)
EXPECTED_LAST: Final = "Nats-Expected-Last-Subject-Sequence"
ROLLUP: Final = "Nats-Rollup"
MSG_TTL: Final = "Nats-TTL"
WRONG_LAST_SEQUENCE: Final = frozenset({10071, 10164})


def timestamp(text: str | None) -> float:
    if not text:
        return 0.0
    # RFC 3339 with nanoseconds; datetime takes at most microseconds.
    head, _, frac = text.rstrip("Z").partition(".")
    stamp = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC).timestamp()
    return stamp + (float(f"0.{frac}") if frac else 0.0)


def ttl_seconds(text: str | None) -> float | None:
    if not text:
        return None
    text = text.strip()
    if text.lower() in {"never", "-1"}:
        return None
    if text[-1:].isdigit():
        return float(text)
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    try:
        return float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError):
        return None


def ttl_headers(seconds: int) -> dict[str, str]:
    """A revision with its own TTL rolls up the key's history: when it expires, no older
    revision (one it overwrote) shows through as the key's value."""
    return {MSG_TTL: str(seconds), ROLLUP: "sub"}


def operation(headers: Mapping[str, str] | None) -> Operation:
    if not headers:
        return Operation.PUT
    op = headers.get(KV_OP)
    if op == "DEL":
        return Operation.DEL
    if op == "PURGE":
        return Operation.PURGE
    reason = headers.get(MARKER_REASON)
    if reason:  # a server-placed marker: the key expired or was removed
        return Operation.PURGE if reason == "Purge" else Operation.DEL
    return Operation.PUT


def from_raw(c: Conn, raw_msg: Any) -> Msg:
    """A message from the stream-get API (base64, no direct-get headers) as a direct get's."""
    headers = dict(raw_msg.headers or {})
    headers.setdefault("Nats-Sequence", str(raw_msg.seq))
    headers.setdefault("Nats-Subject", raw_msg.subject or "")
    if raw_msg.time is not None:
        when = raw_msg.time.astimezone(datetime.UTC)
        headers.setdefault("Nats-Time-Stamp", when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    return Msg(c.nc, subject=raw_msg.subject or "", data=raw_msg.data or b"", headers=headers)


def decode_entry(
    msg: Msg | Any, bucket: str, prefix_len: int, bucket_ttl: int | None, key: str | None = None
) -> Entry:
    """The :class:`~msstore.records.Entry` a message carries, however it was read."""
    headers = msg.headers or {}
    subject = headers.get("Nats-Subject") or msg.subject
    seq = headers.get("Nats-Sequence")
    created = timestamp(headers.get("Nats-Time-Stamp"))
    if seq is None:  # delivered by a consumer rather than a direct get
        meta = msg.metadata
        seq = meta.sequence.stream
        created = meta.timestamp.timestamp()
    key_ttl = ttl_seconds(headers.get(MSG_TTL))
    ttl = bucket_ttl if key_ttl is None else key_ttl
    return Entry(
        bucket,
        key or subject[prefix_len:],
        msg.data or b"",
        int(seq),
        created,
        operation(headers),
        None if ttl is None else created + ttl,
        key_ttl,
    )


async def drain(sub: Any, *, timeout: float, limit: int | None = None) -> list[Msg]:
    """What an ordered consumer delivers until it has caught up (at most ``limit``), then
    unsubscribe: the one way msstore reads a consumer to its end."""
    try:
        info = await sub.consumer_info()
        if info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq):
            return []
        found: list[Msg] = []
        while limit is None or len(found) < limit:
            msg = await sub.next_msg(timeout=timeout)
            found.append(msg)
            if msg.metadata.num_pending == 0:
                break
        return found
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
