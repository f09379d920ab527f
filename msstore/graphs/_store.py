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
  metadata has every key of the filter with an equal value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from msstore.errors import InvalidArgument

from ._records import Blob, StoredCheckpoint, StoredTuple, StoredWrite

__all__ = ["CheckpointStore", "GraphCheckpoints"]

log = logging.getLogger("msstore.graphs")

MAX_ID = 255


@runtime_checkable
class CheckpointStore(Protocol):
    """Where graph checkpoints live (memory: ``MemoryCheckpointStore``, PostgreSQL:
    ``PostgresCheckpointStore``). Each method is one atomic step; the rules are
    :class:`GraphCheckpoints`'."""

    def put(self, checkpoint: StoredCheckpoint, blobs: Sequence[Blob]) -> bool:
        """Store the blobs (a blob already stored at its version is kept) and the checkpoint
        (replacing one with the same id), together; ``False`` and nothing stored when the
        checkpoint's id is at or below its thread's fence."""
        ...

    def put_writes(
        self,
        thread_id: str,
        ns: str,
        checkpoint_id: str,
        writes: Sequence[tuple[StoredWrite, bool]],
    ) -> bool:
        """Store writes of checkpoint ``checkpoint_id``, each with ``replace``: replace a write
        with the same (task, idx), or keep the one stored. ``False`` and nothing stored when
        ``checkpoint_id`` is at or below the thread's fence."""
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

    def prune(self, thread_ids: Sequence[str], *, keep_latest: bool) -> None:
        """Delete the threads' checkpoints (``keep_latest``: all but the newest of each
        namespace) with their writes, and the blobs no checkpoint left points at."""
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


class GraphCheckpoints:
    """A :class:`CheckpointStore` with the rules of the module docstring."""

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store

    def put(self, checkpoint: StoredCheckpoint, blobs: Sequence[Blob]) -> bool:
        """Store a checkpoint and its new channel values; ``False`` when its thread was
        deleted after it was taken (dropped)."""
        check_id(checkpoint.thread_id, "thread_id")
        check_id(checkpoint.ns, "checkpoint_ns", empty=True)
        check_id(checkpoint.checkpoint_id, "checkpoint_id")
        stored = self.store.put(checkpoint, blobs)
        if not stored:
            log.info(
                "checkpoint %s of deleted thread %r dropped",
                checkpoint.checkpoint_id,
                checkpoint.thread_id,
            )
        return stored

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
        stored = self.store.put_writes(
            thread_id, ns, checkpoint_id, [(w, w.idx < 0) for w in writes]
        )
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
        """``"keep_latest"``: keep each namespace's newest checkpoint; ``"delete"``: keep
        none."""
        if strategy not in ("keep_latest", "delete"):
            raise InvalidArgument(f"strategy must be 'keep_latest' or 'delete', got {strategy!r}")
        ids = [check_id(t, "thread_id") for t in thread_ids]
        if ids:
            self.store.prune(ids, keep_latest=strategy == "keep_latest")


def _ordered(found: StoredTuple) -> StoredTuple:
    return StoredTuple(found.checkpoint, found.blobs, sort_writes(found.writes))
