"""Crash recovery for the hybrid manager: replay the KV bucket's change feed into SQL.

The in-process dirty set dies with its process. What survives is the KV bucket itself (a
JetStream stream on disk, replicated when configured) and, in PostgreSQL, a watermark per bucket
(``agents.flush_progress``): every KV revision up to it is known to be in ``agents.state``.
A reconcile pass reads the bucket's retained entries above the watermark in revision order,
keeps the newest per key, upserts them through the same version-guarded bulk path the flusher
uses (so it never overwrites anything newer, and a write both a live flusher and the pass carry is
stored once), deletes rows whose key's newest entry is a delete marker, then advances the
watermark to the highest revision it read.

It runs when a manager opens (recovering whatever a killed predecessor left) and then
periodically in every manager (recovering writes of a process that died while others run).
Because every pass is idempotent, concurrent passes only duplicate work.

Revisions become SQL versions as ``version_offset + revision``. The offset is fixed per bucket
incarnation: when a bucket is deleted and made again its revisions start over at 1, and the first
manager to meet the new incarnation sets the offset above every stored version, so new writes
always win over rows written by the old bucket.

Limits: a write is only recoverable while the bucket retains it. Entries that expire (bucket
TTL, 30 minutes for AGENT_STATE by default) before any pass reads them are gone, so the
reconcile interval (30 s by default) must stay well under the bucket TTL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import attrs

from msstore.codec import default_codec
from msstore.protocols import ChangeFeed, DataStorage, FlushLedger
from msstore.records import Entry, Record

__all__ = ["FeedPosition", "ReconcileReport", "reconcile", "records_for"]

log = logging.getLogger("msstore.recovery")


@attrs.define
class FeedPosition:
    """A bucket's claimed incarnation, version offset and watermark."""

    bucket: str
    incarnation: str
    offset: int
    watermark: int

    @classmethod
    def claim(cls, kv: ChangeFeed, bucket: str, ledger: FlushLedger) -> FeedPosition:
        state = kv.feed_state()
        offset, watermark = ledger.claim_feed(bucket, state.incarnation)
        return cls(bucket, state.incarnation, offset, watermark)


@attrs.frozen
class ReconcileReport:
    """What one pass did: ``read`` entries, ``written`` rows, ``removed`` rows, new watermark."""

    read: int
    written: int
    removed: int
    watermark: int


def records_for(
    entries: Sequence[Entry], offset: int, decode: Callable[[bytes], object]
) -> tuple[list[Record], dict[str, int]]:
    """The newest entry per key as SQL records to upsert, and the keys whose newest entry is a
    delete marker (with the version below which their row is to go)."""
    newest: dict[str, Entry] = {}
    for entry in entries:
        seen = newest.get(entry.key)
        if seen is None or entry.revision > seen.revision:
            newest[entry.key] = entry
    records = []
    removed = {}
    for key, entry in newest.items():
        version = offset + entry.revision
        if entry.is_marker:
            removed[key] = version
        else:
            records.append(Record(key, decode(entry.raw), version, entry.created))
    return records, removed


def reconcile(
    kv: ChangeFeed,
    storage: DataStorage,
    ledger: FlushLedger,
    position: FeedPosition,
    *,
    chunk: int = 5_000,
) -> ReconcileReport:
    """Replay everything above ``position.watermark`` into ``storage``; advance the watermark."""
    read = written = removed = 0
    while True:
        entries = kv.changes(position.watermark, limit=chunk)
        if not entries:
            break
        records, deletes = records_for(entries, position.offset, default_codec.decode)
        if records:
            written += storage.upsert_many(records).written
        for key, version in deletes.items():
            removed += storage.remove(key, below_version=version)
        read += len(entries)
        position.watermark = max(e.revision for e in entries)
        ledger.advance_feed(position.bucket, position.incarnation, position.watermark)
        if len(entries) < chunk:
            break
    if read:
        log.info(
            "reconciled bucket %s: %d entries read, %d rows written, %d removed, watermark %d",
            position.bucket,
            read,
            written,
            removed,
            position.watermark,
        )
    return ReconcileReport(read, written, removed, position.watermark)
