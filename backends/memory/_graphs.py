"""Graph checkpoints in process memory, with the PostgreSQL store's semantics (fences,
values once per version, writes once each), for tests and single-process agents."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import attrs

from msstore.graphs import (
    Blob,
    CheckpointPut,
    CheckpointStore,
    Head,
    Outcome,
    StoredCheckpoint,
    StoredTuple,
    StoredWrite,
    WritesPut,
    delta_channels,
)

__all__ = ["MemoryCheckpointStore"]

Key = tuple[str, str, str]  # thread, namespace, checkpoint id


class MemoryCheckpointStore(CheckpointStore):
    """A :class:`~msstore.graphs.CheckpointStore` in dicts, safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._checkpoints: dict[Key, StoredCheckpoint] = {}
        self._blobs: dict[tuple[str, str, str, str], Blob] = {}
        self._writes: dict[Key, dict[tuple[str, int], tuple[StoredWrite, int]]] = {}
        self._seqs: dict[Key, int] = {}
        self._fences: dict[str, str] = {}
        self._touched: dict[str, float] = {}

    def _fenced(self, thread_id: str, checkpoint_id: str) -> bool:
        fence = self._fences.get(thread_id)
        return fence is not None and checkpoint_id <= fence

    def write(self, entries: Sequence[CheckpointPut | WritesPut]) -> list[Outcome]:
        with self._lock:
            return [self._apply(entry) for entry in entries]

    def _apply(self, entry: CheckpointPut | WritesPut) -> Outcome:
        checkpoint_id = entry.checkpoint_id
        if self._fenced(entry.thread_id, checkpoint_id):
            return Outcome.FENCED
        if isinstance(entry, CheckpointPut) and any(
            b.base is not None and (b.thread_id, b.ns, b.channel, b.base) not in self._blobs
            for b in entry.blobs
        ):
            return Outcome.BASE_GONE
        self._touched[entry.thread_id] = max(entry.at, self._touched.get(entry.thread_id, 0.0))
        if isinstance(entry, CheckpointPut):
            cp = entry.checkpoint
            for blob in entry.blobs:
                self._blobs.setdefault((blob.thread_id, blob.ns, blob.channel, blob.version), blob)
            key = (cp.thread_id, cp.ns, cp.checkpoint_id)
            if key not in self._checkpoints or self._seqs.get(key, 0) <= entry.seq:
                self._checkpoints[key] = cp
                self._seqs[key] = entry.seq
            return Outcome.STORED
        stored = self._writes.setdefault((entry.thread_id, entry.ns, checkpoint_id), {})
        for write, replace in entry.writes:
            held = stored.get((write.task_id, write.idx))
            if held is None or (replace and held[1] <= entry.seq):
                stored[write.task_id, write.idx] = (write, entry.seq)
        return Outcome.STORED

    def _tuple(self, cp: StoredCheckpoint) -> StoredTuple:
        blobs = tuple(
            self._chain(cp.thread_id, cp.ns, channel, str(version))
            for channel, version in cp.versions.items()
        )
        writes = self._writes.get((cp.thread_id, cp.ns, cp.checkpoint_id), {})
        return StoredTuple(cp, sum(blobs, ()), tuple(w for w, _ in writes.values()))

    def _chain(self, thread_id: str, ns: str, channel: str, version: str) -> tuple[Blob, ...]:
        """The blob of a version and, for a delta, those down its chain of bases."""
        chain: list[Blob] = []
        found = self._blobs.get((thread_id, ns, channel, version))
        while found is not None:
            chain.append(found)
            if found.base is None:
                break
            found = self._blobs.get((thread_id, ns, channel, found.base))
        return tuple(chain)

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
            self._touched.pop(thread_id, None)

    def _drop(self, pick: Callable[[Key], bool]) -> None:
        """Remove the checkpoints (and writes) whose key ``pick(key)`` is true, and the blobs
        no remaining checkpoint points at."""
        for key in [k for k in self._checkpoints if pick(k)]:
            del self._checkpoints[key]
            self._seqs.pop(key, None)
        for key in [k for k in self._writes if pick(k)]:
            del self._writes[key]
        live = {
            (b.thread_id, b.ns, b.channel, b.version)
            for cp in self._checkpoints.values()
            for channel, version in cp.versions.items()
            for b in self._chain(cp.thread_id, cp.ns, channel, str(version))
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
            if source in self._touched:
                self._touched[target] = max(self._touched[source], self._touched.get(target, 0))

    def heads(self, thread_ids: Sequence[str]) -> Sequence[Head]:
        wanted = set(thread_ids)
        with self._lock:
            return [
                Head(t, n, i, cp.parent_id, delta_channels(cp.metadata))
                for (t, n, i), cp in self._checkpoints.items()
                if t in wanted
            ]

    def delete_checkpoints(self, thread_id: str, refs: Sequence[tuple[str, str]]) -> None:
        doomed = {(thread_id, ns, checkpoint_id) for ns, checkpoint_id in refs}
        with self._lock:
            self._drop(lambda key: key in doomed)

    def expire(self, before: float) -> Sequence[str]:
        with self._lock:
            gone = sorted(t for t, at in self._touched.items() if at < before)
            for thread_id in gone:
                ids = [k[2] for k in self._checkpoints if k[0] == thread_id]
                if ids:
                    fence = max(ids)
                    self._fences[thread_id] = max(fence, self._fences.get(thread_id, fence))
                self._drop(lambda key, t=thread_id: key[0] == t)  # type: ignore[misc]
                del self._touched[thread_id]
            return gone
