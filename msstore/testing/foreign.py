"""Writes from "another client": data stored past msstore's checks, for tests of what msstore
does with what it did not write (undecodable bytes, JSON it would not produce, an outbox row
with a subject NATS refuses).

msstore's stores refuse such data by design, so no public store method writes it; these
helpers know how each shipped backend takes it: the memory KV appends raw bytes as a revision,
the NATS KV publishes them to the key's subject as any NATS client could, and an outbox source
(memory or PostgreSQL) inserts a row as a trigger or a raw ``INSERT`` would.
"""

from __future__ import annotations

from typing import Any

import orjson

from msstore.coordination import OutboxEvent, OutboxSourceBase
from msstore.errors import Unsupported
from msstore.protocols import KeyValueStore

__all__ = ["foreign_event", "foreign_put"]


def foreign_put(kv: KeyValueStore, key: str, raw: bytes) -> int:
    """Store ``raw`` as ``key``'s next revision, unchecked; return the revision."""
    from msstore.backends.memory import MemoryKV  # noqa: PLC0415

    if isinstance(kv, MemoryKV):
        return kv._foreign_put(key, raw)
    try:
        from msstore.backends.nats import NatsKV  # noqa: PLC0415
    except ImportError:  # the nats extra is not installed: no NATS KV can be passed either
        NatsKV = None  # type: ignore[assignment,misc]
    if NatsKV is not None and isinstance(kv, NatsKV):
        return kv._foreign_put(key, raw)
    raise Unsupported(f"foreign_put does not know how to write raw bytes to {kv!r}")


def foreign_event(outbox: OutboxSourceBase, subject: str, payload: Any) -> OutboxEvent:
    """Append an outbox row with ``subject`` unchecked (``payload``: JSON-able)."""
    if not isinstance(outbox, OutboxSourceBase):
        raise Unsupported(f"foreign_event does not know how to write a raw row to {outbox!r}")
    (event,) = outbox._insert([subject], [orjson.dumps(payload)])
    return event
