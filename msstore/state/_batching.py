"""The one batch writer of the dual store: the flusher and the recovery pass both write with it.

A batch is one version-guarded ``upsert_many`` (one transaction; deletes are tombstone records
in the same batch). When the SQL tier refuses it for good (a value it cannot hold), the batch is
split in halves until the refused records are isolated: every other record is stored, and each
refused one comes back with its error, so one bad entry never stops the entries around it.
Errors that say nothing about the rows (a lost connection, a timeout, a closed store) are raised
as they are: the caller retries the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs

from msstore.errors import MsstoreError, OutcomeUnknown, StoreClosed
from msstore.protocols import DataStorage, FlushLedger
from msstore.records import FlushFailure, Record

__all__ = ["BatchOutcome", "refuses_rows", "set_aside", "write_batch"]


@attrs.frozen
class BatchOutcome:
    """``written`` and ``skipped`` rows (as :class:`~msstore.records.UpsertResult`), and the
    ``refused`` records, in input order, each with the error the store raised for it."""

    written: int = 0
    skipped: int = 0
    refused: tuple[tuple[Record, MsstoreError], ...] = ()

    def __add__(self, other: BatchOutcome) -> BatchOutcome:
        return BatchOutcome(
            self.written + other.written,
            self.skipped + other.skipped,
            self.refused + other.refused,
        )


def refuses_rows(err: BaseException) -> bool:
    """True when ``err`` means the store refused (some of) the rows themselves, so that writing
    them again unchanged can never succeed."""
    return (
        isinstance(err, MsstoreError)
        and not err.retryable
        and not isinstance(err, (OutcomeUnknown, StoreClosed))
    )


def write_batch(storage: DataStorage, records: Sequence[Record]) -> BatchOutcome:
    """Write ``records`` in one ``upsert_many``; isolate the records the store refuses."""
    if not records:
        return BatchOutcome()
    try:
        result = storage.upsert_many(records)
    except MsstoreError as err:
        if not refuses_rows(err):
            raise
        if len(records) == 1:
            return BatchOutcome(refused=((records[0], err),))
        half = len(records) // 2
        return write_batch(storage, records[:half]) + write_batch(storage, records[half:])
    return BatchOutcome(result.written, result.skipped)


def set_aside(storage: DataStorage, failures: Sequence[FlushFailure], log: logging.Logger) -> None:
    """Report entries that cannot be stored: each logged at ERROR, all kept by the store's
    flush ledger (when it has one) for an operator. Raises what the ledger raises."""
    for failure in failures:
        log.error(
            "bucket %s: %r (revision %d) cannot be stored and is set aside: %s",
            failure.bucket,
            failure.key,
            failure.revision,
            failure.reason,
        )
    if failures and isinstance(storage, FlushLedger):
        storage.record_failures(failures)
