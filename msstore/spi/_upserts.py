"""Batch preparation shared by every table store's version-guarded ``upsert_many``."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import TypeVar

from msstore import keys as keygrammar
from msstore.errors import InvalidArgument
from msstore.records import Record

from ._checks import check_many

__all__ = ["check_retention", "check_version", "newest", "newest_per_key", "newest_records"]

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


def _several(records: Iterable[object]) -> Iterable[object]:
    """``records`` as given when a list (the flusher's case), else checked to be several."""
    if type(records) is list:
        return records
    return check_many(records, field="records", of="Record objects")


def _checked(rec: object) -> Record:
    """A record whose key and version are valid (values are the caller's to check)."""
    if not isinstance(rec, Record):
        raise InvalidArgument(f"upsert_many takes Record objects, not {rec!r}")
    keygrammar.check_key(rec.key)
    check_version(rec.version)
    return rec


def _all_checked(records: Iterable[object]) -> list[Record]:
    """:func:`_checked` for each record; the common case (a valid ``Record``) inline."""
    checked: list[Record] = []
    check_key = keygrammar.check_key
    for rec in _several(records):
        if type(rec) is Record and type(rec.version) is int and rec.version >= 1:
            check_key(rec.key)
            checked.append(rec)
        else:
            checked.append(_checked(rec))
    return checked


def newest(
    items: Iterable[T],
    key: Callable[[T], str],
    version: Callable[[T], int],
    *,
    dropped: Callable[[T], object] | None = None,
) -> dict[str, T]:
    """The newest item per key (the one rule every batch of writes collapses by: the flusher's,
    the recovery pass's, each store's ``upsert_many``). ``dropped`` sees each item that loses."""
    found: dict[str, T] = {}
    for item in items:
        k = key(item)
        seen = found.get(k)
        if seen is None:
            found[k] = item
        elif version(item) > version(seen):
            if dropped is not None:
                dropped(seen)
            found[k] = item
        elif dropped is not None:
            dropped(item)
    return found


def newest_per_key(
    records: Iterable[Record], encode: Callable[[object], T]
) -> tuple[dict[str, tuple[Record, T]], int]:
    """Every record checked and encoded (raising before anything is written), then collapsed
    to the newest version per key; returns those and how many records came in."""
    pairs = [(rec, encode(rec.value)) for rec in map(_checked, _several(records))]
    return newest(pairs, lambda p: p[0].key, lambda p: p[0].version), len(pairs)


def newest_records(
    records: Iterable[Record], check_dropped: Callable[[object], object]
) -> tuple[dict[str, Record], int]:
    """Like :func:`newest_per_key` for a store that encodes the surviving values itself, later
    (while its database works on earlier ones): keys and versions are checked here, and so is
    every value that loses to a newer version of its key (``check_dropped``), so that nothing is
    stored if any record is invalid."""
    checked = _all_checked(records)
    found = newest(checked, _key, _version, dropped=lambda rec: check_dropped(rec.value))
    return found, len(checked)


_key: Callable[[Record], str] = operator.attrgetter("key")
_version: Callable[[Record], int] = operator.attrgetter("version")
