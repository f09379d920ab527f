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

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypedDict, runtime_checkable

import attrs

from msstore._internal.ttl import check_ttl
from msstore.errors import ConsistencyViolation, InvalidArgument, SerializationError
from msstore.protocols import KeyValueStore
from msstore.spi import check_int

from . import _deltas as deltas
from ._log import CheckpointLog
from ._records import (
    Blob,
    CheckpointPut,
    Head,
    Outcome,
    StoredCheckpoint,
    StoredTuple,
    StoredWrite,
    WritesPut,
)

__all__ = [
    "DELTA_COUNTERS",
    "CheckpointOptions",
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

    def write(self, entries: Sequence[CheckpointPut | WritesPut]) -> Sequence[Outcome]:
        """Apply the entries, in one transaction: a :class:`CheckpointPut` stores its blobs (a
        blob already stored at its version is kept) and its checkpoint (replacing one with the
        same id unless that one has a higher ``seq``); a :class:`WritesPut` stores its writes
        (a replaced write likewise). An entry whose checkpoint id is at or below its thread's
        fence is dropped (``Outcome.FENCED``); a :class:`CheckpointPut` with a blob whose
        ``base`` is not stored stores nothing (``Outcome.BASE_GONE``). A stored base cannot be
        deleted before the transaction ends. Each entry sets its thread's last touch to its
        ``at`` (never earlier)."""
        ...

    def get(self, thread_id: str, ns: str, checkpoint_id: str | None) -> StoredTuple | None:
        """The checkpoint (the newest when ``checkpoint_id`` is None) with the blobs of its
        versions (and, for a delta, every blob down its chain of bases) and its writes; None if
        there is none."""
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
        blobs no checkpoint left points at (directly or as a delta's base)."""
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
        if self.keep_latest is not None:
            check_int(self.keep_latest, field="keep_latest", minimum=1)
        check_ttl(self.ttl)


DELTA_COUNTERS = "counters_since_delta_snapshot"
"""The metadata key under which LangGraph counts a ``DeltaChannel``'s updates since its last
snapshot."""


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


class CheckpointOptions(TypedDict, total=False):
    """The keyword options of :class:`GraphCheckpoints`, for whoever passes them through
    (``MsstoreSaver(store, **options)``); their defaults are ``GraphCheckpoints``'."""

    retention: Retention | None
    remember: int
    log: KeyValueStore | None
    max_lag: float
    clock: Callable[[], float]


@attrs.frozen
class _Last:
    version: str
    type: str
    data: bytes
    depth: int


class GraphCheckpoints:
    """A :class:`CheckpointStore` with the rules of the module docstring, and ``retention``
    (:class:`Retention`; none by default: everything is kept). ``remember``: how many
    channels' newest values it keeps in memory to store the next ones as deltas on (0: every
    value whole).

    ``log``: a KV bucket written first (:class:`~msstore.graphs.CheckpointLog`): a put or a
    task's writes is one KV write, applied to ``store`` in batches within ``max_lag`` seconds;
    every read, delete, copy or prune applies this process's first, so a process reads its
    own writes, and other processes see them after the lag. Without one, every write goes to
    ``store`` at once.
    """

    def __init__(
        self,
        store: CheckpointStore,
        *,
        retention: Retention | None = None,
        remember: int = 1024,
        log: KeyValueStore | None = None,
        max_lag: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_int(remember, field="remember", minimum=0)
        if retention is not None and not isinstance(retention, Retention):
            raise InvalidArgument(f"retention must be a Retention, got {retention!r}")
        self.store = store
        self.retention = retention or Retention()
        self._clock = clock
        self._lock = threading.Lock()
        self._since_trim: dict[tuple[str, str], int] = {}
        self._values: collections.OrderedDict[tuple[str, str, str], _Last]
        self._values = collections.OrderedDict()
        self._max_values = remember
        self._due: set[tuple[str, str]] = set()
        self.log: CheckpointLog | None = None
        if log is not None:  # (last: it applies what a dead process logged, through us)
            self.log = CheckpointLog(log, self._apply, max_lag=max_lag, clock=clock)

    def put(self, checkpoint: StoredCheckpoint, blobs: Sequence[Blob]) -> bool:
        """Store a checkpoint and its new channel values (a value that extends the channel's
        previous one as a delta on it); ``False`` when its thread was deleted after it was
        taken (dropped). With a log, it is logged; a drop is found (and logged) when it is
        applied, and this returns ``True``."""
        check_id(checkpoint.thread_id, "thread_id")
        check_id(checkpoint.ns, "checkpoint_ns", empty=True)
        check_id(checkpoint.checkpoint_id, "checkpoint_id")
        entry = CheckpointPut(checkpoint, tuple(blobs), at=self._clock())
        if self.log is not None:
            self.log.append([entry])
            return True
        return self._apply([entry])[0] is Outcome.STORED

    def _apply(self, entries: Sequence[CheckpointPut | WritesPut]) -> list[Outcome]:
        """Write entries to the store in one transaction: values packed as deltas, a value
        whose base is gone written again whole, drops logged, retention applied."""
        packed: list[tuple[CheckpointPut | WritesPut, list[int]]] = []
        for entry in entries:
            if isinstance(entry, CheckpointPut):
                pairs = [self._pack(b) for b in entry.blobs]
                blobs = tuple(b for b, _ in pairs)
                packed.append((attrs.evolve(entry, blobs=blobs), [d for _, d in pairs]))
            else:
                packed.append((entry, []))
        outcomes = list(self.store.write([e for e, _ in packed]))
        again = [i for i, o in enumerate(outcomes) if o is Outcome.BASE_GONE]
        if again:  # (a base pruned since we read it: store those whole)
            whole = [entries[i] for i in again]
            for i, outcome in zip(again, self.store.write(whole), strict=True):
                outcomes[i] = outcome
                packed[i] = (entries[i], [0] * len(packed[i][1]))
        for entry, outcome, (_, depths) in zip(entries, outcomes, packed, strict=True):
            if outcome is Outcome.FENCED:
                what = "checkpoint" if isinstance(entry, CheckpointPut) else "writes for"
                log.info(
                    "%s %s of deleted thread %r dropped",
                    what,
                    entry.checkpoint_id,
                    entry.thread_id,
                )
            elif outcome is not Outcome.STORED:
                raise ConsistencyViolation(f"a checkpoint store answered {outcome} to a write")
            elif isinstance(entry, CheckpointPut):
                for blob, depth in zip(entry.blobs, depths, strict=True):
                    self._remember(blob, depth)
                if self.retention.keep_latest is not None:
                    self._count(entry.thread_id, entry.checkpoint.ns, self.retention.keep_latest)
        self._trim_due()
        return outcomes

    def _pack(self, blob: Blob) -> tuple[Blob, int]:
        """``blob`` as a delta on the channel's last value this process saw, when that pays
        and the chain is not too long; with its chain depth. The value becomes the channel's
        last at once, so the next entry of a batch packs on it (stored in the same
        transaction, before it; should it not be stored, the next put finds its base gone
        and is stored whole)."""
        with self._lock:
            last = self._values.get((blob.thread_id, blob.ns, blob.channel))
        packed, depth = blob, 0
        if (
            last is not None
            and last.version != blob.version
            and last.type == blob.type
            and last.depth < deltas.MAX_CHAIN
        ):
            delta = deltas.encode(last.data, blob.data)
            if delta is not None:
                packed, depth = attrs.evolve(blob, data=delta, base=last.version), last.depth + 1
        self._remember(blob, depth)
        return packed, depth

    def _remember(self, blob: Blob, depth: int) -> None:
        """Keep a channel's newest value (whole) to encode the next one on."""
        key = (blob.thread_id, blob.ns, blob.channel)
        with self._lock:
            last = self._values.pop(key, None)
            if last is None or last.version <= blob.version:
                last = _Last(blob.version, blob.type, blob.data, depth)
            self._values[key] = last
            while len(self._values) > self._max_values:
                self._values.popitem(last=False)

    def _count(self, thread_id: str, ns: str, keep: int) -> None:
        """Mark the namespace for a trim every ``keep`` stored puts."""
        with self._lock:
            n = self._since_trim.get((thread_id, ns), 0) + 1
            if n >= keep:
                self._due.add((thread_id, ns))
            self._since_trim[thread_id, ns] = 0 if n >= keep else n

    def _trim_due(self) -> None:
        keep = self.retention.keep_latest
        with self._lock:
            due, self._due = self._due, set()
        for thread_id, ns in sorted(due):
            if keep is not None:
                self._trim([thread_id], keep=keep, ns=ns)

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
        if self.log is not None:
            self.log.append([entry])
            return True
        return self._apply([entry])[0] is Outcome.STORED

    def flush(self) -> None:
        """Apply what this process logged (nothing to do without a log)."""
        if self.log is not None:
            self.log.flush()

    def close(self) -> None:
        """Apply what this process logged and stop the log's flusher (the store stays
        open: it is the caller's)."""
        if self.log is not None:
            self.log.close()

    def abandon(self) -> None:
        """Stop the log's flusher without applying what is pending, as a crash would (it
        stays logged; the next ``GraphCheckpoints`` on the bucket applies it)."""
        if self.log is not None:
            self.log.abandon()

    def get(self, thread_id: str, ns: str, checkpoint_id: str | None) -> StoredTuple | None:
        """A checkpoint (the newest when ``checkpoint_id`` is None), its values and its
        pending writes in the order a graph applies them."""
        check_id(thread_id, "thread_id")
        self.flush()
        found = self.store.get(thread_id, ns, checkpoint_id)
        return None if found is None else self._whole(found)

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
        self.flush()
        count = 0
        for found in self.store.list(thread_id, ns, before=before):
            cp = found.checkpoint
            if checkpoint_id is not None and cp.checkpoint_id != checkpoint_id:
                continue
            if metadata and not all(
                k in cp.metadata and cp.metadata[k] == v for k, v in metadata.items()
            ):
                continue
            yield self._whole(found)
            count += 1
            if limit is not None and count >= limit:
                return

    def delete_thread(self, thread_id: str, fence: str) -> None:
        """Delete a thread; checkpoints and writes that arrive later with ids at or below
        ``fence`` (a checkpoint id taken now) are dropped."""
        check_id(thread_id, "thread_id")
        check_id(fence, "fence")
        self.flush()
        self.store.delete_thread(thread_id, fence)

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints the runs wrote, with their writes."""
        ids = [check_id(r, "run_id") for r in run_ids]
        if ids:
            self.flush()
            self.store.delete_runs(ids)

    def copy_thread(self, source: str, target: str) -> None:
        """Copy a thread's checkpoints, values and writes to another thread."""
        check_id(source, "source")
        check_id(target, "target")
        self.flush()
        self.store.copy_thread(source, target)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"``: keep each namespace's newest checkpoint (and the ancestors its
        delta channels are rebuilt from); ``"delete"``: keep none. The threads stay usable."""
        if strategy not in ("keep_latest", "delete"):
            raise InvalidArgument(f"strategy must be 'keep_latest' or 'delete', got {strategy!r}")
        self.trim(thread_ids, keep=1 if strategy == "keep_latest" else 0)

    def trim(self, thread_ids: Sequence[str], *, keep: int, ns: str | None = None) -> int:
        """Keep each namespace's (only ``ns``'s when given) newest ``keep`` checkpoints and
        their delta ancestors, delete the rest; how many went."""
        check_int(keep, field="keep", minimum=0)
        ids = [check_id(t, "thread_id") for t in thread_ids]
        self.flush()
        return self._trim(ids, keep=keep, ns=ns)

    def _trim(self, ids: Sequence[str], *, keep: int, ns: str | None) -> int:
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
        self.flush()
        gone = self.store.expire(self._clock() - self.retention.ttl)
        if gone:
            log.info("expired %d graph threads", len(gone))
        return gone

    def _whole(self, found: StoredTuple) -> StoredTuple:
        """``found`` with each channel's value rebuilt whole, and its writes in order."""
        cp = found.checkpoint
        by_version = {(b.channel, b.version): b for b in found.blobs}
        whole = []
        for channel, version in cp.versions.items():
            chain: list[Blob] = []
            blob = by_version.get((channel, str(version)))
            while blob is not None and len(chain) <= deltas.MAX_CHAIN:
                chain.append(blob)
                if blob.base is None:
                    break
                blob = by_version.get((channel, blob.base))
            if not chain:
                continue
            if chain[-1].base is not None:
                raise SerializationError(
                    f"channel {channel!r} of checkpoint {cp.checkpoint_id} is stored as a delta "
                    f"whose base {chain[-1].base!r} is missing"
                )
            data = chain[-1].data
            for link in reversed(chain[:-1]):
                data = deltas.apply(data, link.data)
            value = attrs.evolve(chain[0], data=data, base=None)
            whole.append(value)
            self._remember(value, len(chain) - 1)
        return StoredTuple(cp, tuple(whole), sort_writes(found.writes))
