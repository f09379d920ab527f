"""Crash recovery for the hybrid manager: replay the KV bucket's change feed into SQL.

The in-process dirty set dies with its process. What survives is the KV bucket itself (a
JetStream stream on disk, replicated when configured) and, in PostgreSQL, a watermark per bucket
(``agents.flush_progress``): every KV revision up to it is known to be in ``agents.state``.
A reconcile pass reads the bucket's retained entries above the watermark in revision order,
keeps the newest per key, upserts them through the same version-guarded bulk path the flusher
uses (so it never overwrites anything newer, and a write both a live flusher and the pass carry is
stored once), writes a tombstone for each key whose newest entry is a delete marker, then
advances the watermark to the highest revision it read. Entries it cannot store (bytes msstore
cannot decode, a value the SQL tier refuses) are set aside in the ledger's failure list and the
watermark moves past them.

Deletes and expiries are durable facts. A delete becomes a tombstone row at the delete's version,
so the version guard refuses every older write of the key, whoever flushes it and whenever (a
late flush of another process, a recovery pass, a hydration). Tombstones are swept
(``FlushLedger.sweep``) once they are older than the tombstone retention and every bucket's
watermark is past them; the retention must exceed the bucket TTL (how long a delete marker stays
in KV) and the longest a live flusher may hold a write. A per-write ``ttl`` is the value's own
expiry: it is kept in SQL as ``expires_at``, honoured by every read, passed on (what remains of
it) when a SQL row is hydrated into KV, and swept with the tombstones. The bucket TTL is only how
long a value stays in the hot tier; after it, reads find the value in SQL.

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
from msstore.errors import MsstoreError
from msstore.protocols import ChangeFeed, DataStorage, FlushLedger
from msstore.records import Entry, FlushFailure, Record
from msstore.spi import newest

from ._batching import set_aside, write_batch

__all__ = ["FeedPosition", "ReconcileReport", "reconcile", "record_of", "records_for"]

log = logging.getLogger("msstore.state.recovery")


@attrs.define
class FeedPosition:
    """A bucket's claimed incarnation, version offset and watermark."""

    bucket: str
    incarnation: str
    offset: int
    watermark: int

    @classmethod
    def claim(cls, kv: ChangeFeed, bucket: str, ledger: FlushLedger) -> FeedPosition:
        """Claim ``bucket``'s current incarnation in ``ledger``: its version offset and
        watermark."""
        state = kv.feed_state()
        offset, watermark = ledger.claim_feed(bucket, state.incarnation)
        return cls(bucket, state.incarnation, offset, watermark)


@attrs.frozen
class ReconcileReport:
    """What one pass did: ``read`` entries, ``written`` rows, ``removed`` keys (tombstones
    written), the new ``watermark``, and the entries it had to set aside (``failures``)."""

    read: int
    written: int
    removed: int
    watermark: int
    failures: tuple[FlushFailure, ...] = ()


def record_of(entry: Entry, offset: int, decode: Callable[[bytes], object]) -> Record:
    """The SQL record of KV entry ``entry``: its value (decoded; raises ``SerializationError``
    for bytes msstore cannot decode), or a tombstone for a delete or purge marker. A revision
    with its own TTL keeps it as the row's ``expires_at``."""
    version = offset + entry.revision
    if entry.is_marker:
        return Record(entry.key, None, version, entry.created, deleted=True)
    expires_at = None if entry.ttl is None else entry.created + entry.ttl
    return Record(entry.key, decode(entry.raw), version, entry.created, expires_at)


def records_for(
    entries: Sequence[Entry], offset: int, decode: Callable[[bytes], object]
) -> tuple[list[Record], list[tuple[Entry, str]]]:
    """The newest entry per key as SQL records (tombstones for markers), and the entries that
    cannot become records, each with the reason."""
    records = []
    poison = []
    for entry in newest(entries, lambda e: e.key, lambda e: e.revision).values():
        try:
            records.append(record_of(entry, offset, decode))
        except MsstoreError as err:
            poison.append((entry, f"undecodable value: {err}"))
    return records, poison


def reconcile(
    kv: ChangeFeed,
    storage: DataStorage,
    ledger: FlushLedger,
    position: FeedPosition,
    *,
    chunk: int = 5_000,
) -> ReconcileReport:
    """Replay everything above ``position.watermark`` into ``storage``; advance the watermark.

    Entries that cannot be stored (undecodable bytes, values the store refuses) are recorded in
    ``ledger`` and passed over: one bad entry never stops the pass.
    """
    read = written = removed = 0
    failures: list[FlushFailure] = []
    while True:
        entries = kv.changes(position.watermark, limit=chunk)
        if not entries:
            break
        records, poison = records_for(entries, position.offset, default_codec.decode)
        outcome = write_batch(storage, records)
        written += outcome.written
        removed += sum(1 for r in records if r.deleted)
        found = [
            FlushFailure(position.bucket, e.key, e.revision, reason) for e, reason in poison
        ] + [
            FlushFailure(position.bucket, r.key, r.version - position.offset, str(err))
            for r, err in outcome.refused
        ]
        if found:
            set_aside(storage, found, log)  # (a ledger that fails: the pass is retried)
            failures.extend(found)
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
    return ReconcileReport(read, written, removed, position.watermark, tuple(failures))
