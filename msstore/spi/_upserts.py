"""Batch preparation shared by every table store's version-guarded ``upsert_many``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from msstore import keys as keygrammar
from msstore.errors import InvalidArgument
from msstore.records import Record

__all__ = ["check_retention", "check_version", "newest_per_key", "newest_records"]

T = TypeVar("T")


def check_version(version: object) -> int:
    """A row version: an ``int`` of at least 1 (bools and floats refused)."""
    if type(version) is not int or version < 1:
        raise InvalidArgument(f"version must be an int >= 1, got {version!r}")
    return version


def check_retention(seconds: object) -> float:
    """A tombstone retention: a finite number of seconds >= 0 (bools refused)."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 <= seconds < float("inf")
    ):
        raise InvalidArgument(
            f"tombstone_retention must be a finite number of seconds >= 0, got {seconds!r}"
        )
    return float(seconds)


def _checked(rec: object) -> Record:
    """A record whose key and version are valid (values are the caller's to check)."""
    if not isinstance(rec, Record):
        raise InvalidArgument(f"upsert_many takes Record objects, not {rec!r}")
    keygrammar.check_key(rec.key)
    check_version(rec.version)
    return rec


def newest_per_key(
    records: Iterable[Record], encode: Callable[[object], T]
) -> tuple[dict[str, tuple[Record, T]], int]:
    """Every record checked and encoded (raising before anything is written), then collapsed
    to the newest version per key; returns those and how many records came in."""
    newest: dict[str, tuple[Record, T]] = {}
    total = 0
    for item in records:
        total += 1
        rec = _checked(item)
        encoded = encode(rec.value)
        seen = newest.get(rec.key)
        if seen is None or rec.version > seen[0].version:
            newest[rec.key] = (rec, encoded)
    return newest, total


def newest_records(
    records: Iterable[Record], check_dropped: Callable[[object], object]
) -> tuple[dict[str, Record], int]:
    """Like :func:`newest_per_key` for a store that encodes the surviving values itself, later
    (while its database works on earlier ones): keys and versions are checked here, and so is
    every value that loses to a newer version of its key (``check_dropped``), so that nothing is
    stored if any record is invalid."""
    newest: dict[str, Record] = {}
    total = 0
    for item in records:
        total += 1
        rec = _checked(item)
        seen = newest.get(rec.key)
        if seen is None:
            newest[rec.key] = rec
        elif rec.version > seen.version:
            check_dropped(seen.value)
            newest[rec.key] = rec
        else:
            check_dropped(rec.value)
    return newest, total
