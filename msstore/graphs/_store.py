"""The seam a graph checkpoint backend implements (:class:`CheckpointStore`), and the rules
every backend shares (:class:`GraphCheckpoints`), written once here.

The rules:

* a checkpoint's channel values are stored once per (thread, namespace, channel, version): a
  step that changes one channel stores one value, never the whole state;
* a pending write is identified by (checkpoint, task, idx): written again (a task retried, a
  process restarted) it is not duplicated; a special channel's write (negative ``idx``)
  replaces the earlier one;
* pending writes come back in the order a graph applies them: by task path, task id, idx;
* a deleted thread stays deleted: deleting it sets a fence, a checkpoint id taken at the
  delete; a checkpoint or write at or below the fence (one a run started before the delete
  sends late) is dropped, never stored. Checkpoint ids are time-ordered, so a run started
  after the delete writes above the fence and starts the thread afresh;
* listing is newest first (by checkpoint id); a metadata filter keeps the checkpoints whose
  metadata has every key of the filter with an equal value;
* retention (:class:`Retention`) and pruning never drop a checkpoint a kept one needs: a
  ``DeltaChannel`` rebuilds its value from its ancestors' writes back to its last snapshot
  (the ``counters_since_delta_snapshot`` metadata LangGraph keeps), so those ancestors stay;
* a row is only replaced by a write with a ``seq`` at least as high as the one that stored it
  (a write replayed late, by crash recovery, never overwrites a newer one).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from msstore.errors import InvalidArgument

from ._records import (
    Blob,
    CheckpointPut,
    Head,
    StoredCheckpoint,
    StoredTuple,
    StoredWrite,
    WritesPut,
)

__all__ = [
    "DELTA_COUNTERS",
    "CheckpointStore",
    "GraphCheckpoints",
    "Retention",
    "delta_channels",
    "doomed",
]

log = logging.getLogger("msstore.graphs")

MAX_ID = 255


@runtime_checkable
class CheckpointStore(Protocol):
    """Where graph checkpoints live (memory: ``MemoryCheckpointStore``, PostgreSQL:
    ``PostgresCheckpointStore``). Each method is one atomic step; the rules are
    :class:`GraphCheckpoints`'."""

    def write(self, entries: Sequence[CheckpointPut | WritesPut]) -> Sequence[bool]:
        """Apply the entries in order, in one transaction: a :class:`CheckpointPut` stores its
        blobs (a blob already stored at its version is kept) and its checkpoint (replacing one
        with the same id unless that one has a higher ``seq``); a :class:`WritesPut` stores
        its writes (a replaced write likewise). An entry whose checkpoint id is at or below its
        thread's fence is dropped: ``False`` in its place. Each entry sets its thread's
        last touch to its ``at`` (never earlier)."""
        ...

    def get(self, thread_id: str, ns: str, checkpoint_id: str | None) -> StoredTuple | None:
        """The checkpoint (the newest when ``checkpoint_id`` is None) with the blobs of its
        versions and its writes; None if there is none."""
        ...

    def list(
        self, thread_id: str | None, ns: str | None, *, before: str | None
    ) -> Iterator[StoredTuple]:
        """Checkpoints of the thread (None: every thread) and namespace (None: every one),
        newest first, only those with an id below ``before`` when given."""
        ...

    def delete_thread(self, thread_id: str, fence: str) -> None:
        """Delete the thread's checkpoints, blobs and writes, and set its fence to ``fence``
        (never lower it)."""
        ...

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata ``run_id`` is one of ``run_ids``, with their
        writes."""
        ...

    def copy_thread(self, source: str, target: str) -> None:
        """Copy every checkpoint, blob and write of ``source`` to ``target``."""
        ...

    def heads(self, thread_ids: Sequence[str]) -> Sequence[Head]:
        """The checkpoints of the threads, without values or writes (any order)."""
        ...

    def delete_checkpoints(self, thread_id: str, refs: Sequence[tuple[str, str]]) -> None:
        """Delete the thread's checkpoints ``(ns, checkpoint_id)`` with their writes, and the
        blobs no checkpoint left points at."""
        ...

    def expire(self, before: float) -> Sequence[str]:
        """Delete every thread last touched before ``before``, each fenced at its newest
        checkpoint first (as :meth:`delete_thread`), atomically against a write that touches
        it meanwhile (that thread lives on); the threads deleted."""
        ...


def check_id(value: object, field: str, *, empty: bool = False) -> str:
    """``value`` if it is a str of at most 255 characters (non-empty unless ``empty``)."""
    if not isinstance(value, str) or len(value) > MAX_ID or (not empty and not value):
        what = "a str" if empty else "a non-empty str"
        raise InvalidArgument(
            f"{field} must be {what} of at most {MAX_ID} characters, got {value!r}"
        )
    return value


def sort_writes(writes: Sequence[StoredWrite]) -> tuple[StoredWrite, ...]:
    """Pending writes in the order a graph applies them: task path, task id, idx."""
    return tuple(sorted(writes, key=lambda w: (w.task_path, w.task_id, w.idx)))


@attrs.frozen(kw_only=True)
class Retention:
    """How much of a thread is kept.

    ``keep_latest``: each namespace of a thread keeps its newest ``keep_latest`` checkpoints
    (and the ancestors a delta channel rebuilds them from); older ones go with their writes
    and the values no kept checkpoint points at. Applied on write, every ``keep_latest`` puts
    of a namespace, so a namespace holds at most ``2 * keep_latest`` checkpoints between trims.
    ``ttl``: seconds after its last write a thread expires (deleted as by ``delete_thread``)
    at the next :meth:`GraphCheckpoints.sweep`.
    """

    keep_latest: int | None = None
    ttl: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.keep_latest is not None and (
            type(self.keep_latest) is not int or self.keep_latest < 1
        ):
            raise InvalidArgument(
                f"keep_latest must be an int >= 1 or None, got {self.keep_latest!r}"
            )
        if self.ttl is not None and (
            not isinstance(self.ttl, (int, float))
            or isinstance(self.ttl, bool)
            or not math.isfinite(self.ttl)
            or self.ttl <= 0
        ):
            raise InvalidArgument(f"ttl must be a number of seconds > 0 or None, got {self.ttl!r}")


DELTA_COUNTERS = "counters_since_delta_snapshot"


def delta_channels(metadata: Mapping[str, Any]) -> frozenset[str]:
    """The channels a checkpoint rebuilds from its ancestors' writes: those whose
    ``counters_since_delta_snapshot`` (LangGraph's metadata, ``{channel: [updates,
    supersteps]}``) count an update since their last snapshot."""
    counters = metadata.get(DELTA_COUNTERS)
    if not isinstance(counters, Mapping):
        return frozenset()
    return frozenset(
        channel
        for channel, counted in counters.items()
        if isinstance(counted, (list, tuple))
        and counted
        and isinstance(counted[0], int)
        and counted[0] > 0
    )


def doomed(heads: Sequence[Head], keep: int) -> dict[str, list[tuple[str, str]]]:
    """Per thread, the ``(ns, checkpoint_id)`` retention deletes: all but each namespace's
    newest ``keep`` (0: all), and but the ancestors a kept checkpoint's delta channels walk
    back to (up to the nearest one whose counters show no update since a snapshot)."""
    by_ns: dict[tuple[str, str], dict[str, Head]] = {}
    for head in heads:
        by_ns.setdefault((head.thread_id, head.ns), {})[head.checkpoint_id] = head
    out: dict[str, list[tuple[str, str]]] = {}
    for (thread_id, ns), found in by_ns.items():
        newest = sorted(found, reverse=True)[:keep]
        kept = set(newest)
        for checkpoint_id in newest:
            needed = found[checkpoint_id].deltas
            cursor = found[checkpoint_id]
            while needed and cursor.parent_id is not None and cursor.parent_id in found:
                cursor = found[cursor.parent_id]
                kept.add(cursor.checkpoint_id)
                needed = needed & cursor.deltas
        gone = [(ns, c) for c in found if c not in kept]
        if gone:
            out.setdefault(thread_id, []).extend(gone)
    return out


class GraphCheckpoints:
    """A :class:`CheckpointStore` with the rules of the module docstring, and ``retention``
    (:class:`Retention`; none by default: everything is kept)."""

    def __init__(
        self,
        store: CheckpointStore,
        *,
        retention: Retention | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention is not None and not isinstance(retention, Retention):
            raise InvalidArgument(f"retention must be a Retention, got {retention!r}")
        self.store = store
        self.retention = retention or Retention()
        self._clock = clock
        self._lock = threading.Lock()
        self._since_trim: dict[tuple[str, str], int] = {}

    def put(self, checkpoint: StoredCheckpoint, blobs: Sequence[Blob]) -> bool:
        """Store a checkpoint and its new channel values; ``False`` when its thread was
        deleted after it was taken (dropped)."""
        check_id(checkpoint.thread_id, "thread_id")
        check_id(checkpoint.ns, "checkpoint_ns", empty=True)
        check_id(checkpoint.checkpoint_id, "checkpoint_id")
        entry = CheckpointPut(checkpoint, tuple(blobs), at=self._clock())
        stored = self.store.write([entry])[0]
        if not stored:
            log.info(
                "checkpoint %s of deleted thread %r dropped",
                checkpoint.checkpoint_id,
                checkpoint.thread_id,
            )
        elif self.retention.keep_latest is not None:
            self._count(checkpoint.thread_id, checkpoint.ns, self.retention.keep_latest)
        return stored

    def _count(self, thread_id: str, ns: str, keep: int) -> None:
        """Trim the namespace every ``keep`` stored puts."""
        with self._lock:
            n = self._since_trim.get((thread_id, ns), 0) + 1
            due = n >= keep
            self._since_trim[thread_id, ns] = 0 if due else n
        if due:
            self.trim([thread_id], keep=keep, ns=ns)

    def put_writes(
        self, thread_id: str, ns: str, checkpoint_id: str, writes: Sequence[StoredWrite]
    ) -> bool:
        """Store pending writes (once each; a special channel's replaces); ``False`` when
        the thread was deleted after their checkpoint was taken (dropped)."""
        check_id(thread_id, "thread_id")
        check_id(ns, "checkpoint_ns", empty=True)
        check_id(checkpoint_id, "checkpoint_id")
        if not writes:
            return True
        entry = WritesPut(
            thread_id, ns, checkpoint_id, tuple((w, w.idx < 0) for w in writes), at=self._clock()
        )
        stored = self.store.write([entry])[0]
        if not stored:
            log.info(
                "writes for checkpoint %s of deleted thread %r dropped", checkpoint_id, thread_id
            )
        return stored

    def get(self, thread_id: str, ns: str, checkpoint_id: str | None) -> StoredTuple | None:
        """A checkpoint (the newest when ``checkpoint_id`` is None), its values and its
        pending writes in the order a graph applies them."""
        found = self.store.get(check_id(thread_id, "thread_id"), ns, checkpoint_id)
        return None if found is None else _ordered(found)

    def list(
        self,
        thread_id: str | None,
        ns: str | None,
        *,
        checkpoint_id: str | None = None,
        before: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> Iterator[StoredTuple]:
        """Checkpoints newest first: of one thread and namespace (None: all), one id, below
        ``before``, whose metadata matches ``metadata``, at most ``limit``."""
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidArgument(f"limit must be an int >= 0 or None, got {limit!r}")
        if limit == 0:
            return
        count = 0
        for found in self.store.list(thread_id, ns, before=before):
            cp = found.checkpoint
            if checkpoint_id is not None and cp.checkpoint_id != checkpoint_id:
                continue
            if metadata and not all(
                k in cp.metadata and cp.metadata[k] == v for k, v in metadata.items()
            ):
                continue
            yield _ordered(found)
            count += 1
            if limit is not None and count >= limit:
                return

    def delete_thread(self, thread_id: str, fence: str) -> None:
        """Delete a thread; checkpoints and writes that arrive later with ids at or below
        ``fence`` (a checkpoint id taken now) are dropped."""
        self.store.delete_thread(check_id(thread_id, "thread_id"), check_id(fence, "fence"))

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints the runs wrote, with their writes."""
        ids = [check_id(r, "run_id") for r in run_ids]
        if ids:
            self.store.delete_runs(ids)

    def copy_thread(self, source: str, target: str) -> None:
        """Copy a thread's checkpoints, values and writes to another thread."""
        self.store.copy_thread(check_id(source, "source"), check_id(target, "target"))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"``: keep each namespace's newest checkpoint (and the ancestors its
        delta channels are rebuilt from); ``"delete"``: keep none. The threads stay usable."""
        if strategy not in ("keep_latest", "delete"):
            raise InvalidArgument(f"strategy must be 'keep_latest' or 'delete', got {strategy!r}")
        self.trim(thread_ids, keep=1 if strategy == "keep_latest" else 0)

    def trim(self, thread_ids: Sequence[str], *, keep: int, ns: str | None = None) -> int:
        """Keep each namespace's (only ``ns``'s when given) newest ``keep`` checkpoints and
        their delta ancestors, delete the rest; how many went."""
        if type(keep) is not int or keep < 0:
            raise InvalidArgument(f"keep must be an int >= 0, got {keep!r}")
        ids = [check_id(t, "thread_id") for t in thread_ids]
        if not ids:
            return 0
        heads = [h for h in self.store.heads(ids) if ns is None or h.ns == ns]
        gone = doomed(heads, keep)
        for thread_id, refs in gone.items():
            self.store.delete_checkpoints(thread_id, refs)
        return sum(len(refs) for refs in gone.values())

    def sweep(self) -> Sequence[str]:
        """Expire the threads untouched for the retention's ``ttl`` (none without one); the
        threads deleted."""
        if self.retention.ttl is None:
            return []
        gone = self.store.expire(self._clock() - self.retention.ttl)
        if gone:
            log.info("expired %d graph threads", len(gone))
        return gone


def _ordered(found: StoredTuple) -> StoredTuple:
    return StoredTuple(found.checkpoint, found.blobs, sort_writes(found.writes))
