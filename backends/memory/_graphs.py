"""Graph checkpoints in process memory, with the PostgreSQL store's semantics (fences,
values once per version, writes once each), for tests and single-process agents."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import attrs

from msstore.graphs import Blob, CheckpointStore, StoredCheckpoint, StoredTuple, StoredWrite

__all__ = ["MemoryCheckpointStore"]

Key = tuple[str, str, str]  # thread, namespace, checkpoint id


class MemoryCheckpointStore(CheckpointStore):
    """A :class:`~msstore.graphs.CheckpointStore` in dicts, safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._checkpoints: dict[Key, StoredCheckpoint] = {}
        self._blobs: dict[tuple[str, str, str, str], Blob] = {}
        self._writes: dict[Key, dict[tuple[str, int], StoredWrite]] = {}
        self._fences: dict[str, str] = {}

    def _fenced(self, thread_id: str, checkpoint_id: str) -> bool:
        fence = self._fences.get(thread_id)
        return fence is not None and checkpoint_id <= fence

    def put(self, checkpoint: StoredCheckpoint, blobs: Sequence[Blob]) -> bool:
        with self._lock:
            if self._fenced(checkpoint.thread_id, checkpoint.checkpoint_id):
                return False
            for blob in blobs:
                self._blobs.setdefault((blob.thread_id, blob.ns, blob.channel, blob.version), blob)
            key = (checkpoint.thread_id, checkpoint.ns, checkpoint.checkpoint_id)
            self._checkpoints[key] = checkpoint
            return True

    def put_writes(
        self,
        thread_id: str,
        ns: str,
        checkpoint_id: str,
        writes: Sequence[tuple[StoredWrite, bool]],
    ) -> bool:
        with self._lock:
            if self._fenced(thread_id, checkpoint_id):
                return False
            stored = self._writes.setdefault((thread_id, ns, checkpoint_id), {})
            for write, replace in writes:
                if replace or (write.task_id, write.idx) not in stored:
                    stored[write.task_id, write.idx] = write
            return True

    def _tuple(self, cp: StoredCheckpoint) -> StoredTuple:
        blobs = tuple(
            b
            for channel, version in cp.versions.items()
            if (b := self._blobs.get((cp.thread_id, cp.ns, channel, version))) is not None
        )
        writes = self._writes.get((cp.thread_id, cp.ns, cp.checkpoint_id), {})
        return StoredTuple(cp, blobs, tuple(writes.values()))

    def get(self, thread_id: str, ns: str, checkpoint_id: str | None) -> StoredTuple | None:
        with self._lock:
            if checkpoint_id is None:
                ids = [k[2] for k in self._checkpoints if k[0] == thread_id and k[1] == ns]
                if not ids:
                    return None
                checkpoint_id = max(ids)
            cp = self._checkpoints.get((thread_id, ns, checkpoint_id))
            return None if cp is None else self._tuple(cp)

    def list(
        self, thread_id: str | None, ns: str | None, *, before: str | None
    ) -> Iterator[StoredTuple]:
        with self._lock:
            found = [
                self._tuple(cp)
                for (t, n, i), cp in self._checkpoints.items()
                if (thread_id is None or t == thread_id)
                and (ns is None or n == ns)
                and (before is None or i < before)
            ]
        found.sort(key=lambda f: f.checkpoint.checkpoint_id, reverse=True)
        return iter(found)

    def delete_thread(self, thread_id: str, fence: str) -> None:
        with self._lock:
            self._drop(lambda key: key[0] == thread_id)
            self._fences[thread_id] = max(fence, self._fences.get(thread_id, fence))

    def _drop(self, pick: Callable[[Key], bool]) -> None:
        """Remove the checkpoints (and writes) whose key ``pick(key)`` is true, and the blobs
        no remaining checkpoint points at."""
        for key in [k for k in self._checkpoints if pick(k)]:
            del self._checkpoints[key]
        for key in [k for k in self._writes if pick(k)]:
            del self._writes[key]
        live = {
            (cp.thread_id, cp.ns, channel, version)
            for cp in self._checkpoints.values()
            for channel, version in cp.versions.items()
        }
        for blob_key in [k for k in self._blobs if k not in live]:
            del self._blobs[blob_key]

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        wanted = set(run_ids)
        with self._lock:
            doomed = {
                k for k, cp in self._checkpoints.items() if cp.metadata.get("run_id") in wanted
            }
            self._drop(lambda key: key in doomed)

    def copy_thread(self, source: str, target: str) -> None:
        with self._lock:
            for (t, n, i), cp in list(self._checkpoints.items()):
                if t == source:
                    self._checkpoints[target, n, i] = attrs.evolve(cp, thread_id=target)
            for (t, n, c, v), blob in list(self._blobs.items()):
                if t == source:
                    self._blobs[target, n, c, v] = attrs.evolve(blob, thread_id=target)
            for (t, n, i), writes in list(self._writes.items()):
                if t == source:
                    self._writes[target, n, i] = dict(writes)

    def prune(self, thread_ids: Sequence[str], *, keep_latest: bool) -> None:
        wanted = set(thread_ids)
        with self._lock:
            newest: dict[tuple[str, str], str] = {}
            for t, n, i in self._checkpoints:
                if t in wanted and keep_latest:
                    newest[t, n] = max(i, newest.get((t, n), i))
            self._drop(lambda key: key[0] in wanted and newest.get((key[0], key[1])) != key[2])
