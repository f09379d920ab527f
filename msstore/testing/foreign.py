"""Writes from "another client": bytes stored past msstore's codec, for tests of what msstore
does with values it did not write (undecodable bytes, JSON it would not produce).

msstore's stores refuse such values by design, so no store method writes them; this helper
knows how each shipped backend takes raw bytes: the memory KV appends them as a revision, the
NATS KV publishes them to the key's subject as any NATS client could.
"""

from __future__ import annotations

from msstore.errors import Unsupported
from msstore.protocols import KeyValueStore

__all__ = ["foreign_put"]


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
