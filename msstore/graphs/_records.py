"""What a graph checkpoint store keeps: checkpoints, the channel values they point at (stored
once per version), and the pending writes of each checkpoint. Values arrive serialized
(``(type, bytes)``, the graph library's own serializer); the store never looks inside."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "Blob",
    "CheckpointPut",
    "Head",
    "Outcome",
    "StoredCheckpoint",
    "StoredTuple",
    "StoredWrite",
    "WritesPut",
]


@attrs.frozen
class Blob:
    """A channel's value at one version of one thread and namespace (``type`` ``"empty"``: the
    channel had no value at that version). With a ``base``, ``data`` is a delta on the value
    at version ``base`` of the same channel (:mod:`msstore.graphs._deltas`)."""

    thread_id: str
    ns: str
    channel: str
    version: str
    type: str
    data: bytes
    base: str | None = None


class Outcome(enum.Enum):
    """What became of one entry of :meth:`CheckpointStore.write`."""

    STORED = "stored"
    FENCED = "fenced"
    """Dropped: its checkpoint id is at or below the thread's fence (deleted since)."""
    BASE_GONE = "base_gone"
    """Nothing stored: a blob's ``base`` is not stored (any more); write it whole."""


@attrs.frozen
class StoredCheckpoint:
    """A checkpoint without its channel values: ``body`` is the serialized rest (ids,
    timestamps, what each node has seen), ``metadata`` JSON, ``versions`` the channel versions
    (a value is stored at ``str(version)``); ``parent_id`` the checkpoint it follows."""

    thread_id: str
    ns: str
    checkpoint_id: str
    parent_id: str | None
    body_type: str
    body: bytes
    metadata: Mapping[str, Any]
    versions: Mapping[str, str | int | float]


@attrs.frozen
class StoredWrite:
    """One pending write of a task to a channel, made after checkpoint ``checkpoint_id``.
    ``idx`` is its place in the task's writes (negative for the special channels, whose
    write replaces an earlier one; any other is written once)."""

    task_id: str
    idx: int
    channel: str
    type: str
    data: bytes
    task_path: str = ""


@attrs.frozen
class StoredTuple:
    """A checkpoint with the blobs of its versions and its pending writes (in the order they
    were stored)."""

    checkpoint: StoredCheckpoint
    blobs: tuple[Blob, ...]
    writes: tuple[StoredWrite, ...]


@attrs.frozen
class CheckpointPut:
    """Store ``checkpoint`` and the ``blobs`` of its new versions. ``seq`` orders writes of
    the same row (a row is replaced only by a write with a ``seq`` at least as high); ``at``
    is when it was written (Unix seconds: the thread's last touch, for its time-to-live)."""

    checkpoint: StoredCheckpoint
    blobs: tuple[Blob, ...]
    seq: int = 0
    at: float = 0.0

    @property
    def thread_id(self) -> str:
        """The checkpoint's thread."""
        return self.checkpoint.thread_id

    @property
    def checkpoint_id(self) -> str:
        """The checkpoint's id."""
        return self.checkpoint.checkpoint_id


@attrs.frozen
class WritesPut:
    """Store pending ``writes`` of one checkpoint, each with ``replace``: replace a write with
    the same (task, idx), or keep the one stored. ``seq`` and ``at`` as for
    :class:`CheckpointPut`."""

    thread_id: str
    ns: str
    checkpoint_id: str
    writes: tuple[tuple[StoredWrite, bool], ...]
    seq: int = 0
    at: float = 0.0


@attrs.frozen
class Head:
    """What retention needs of a checkpoint: where it is, its parent, and the delta channels
    it rebuilds from its ancestors' writes (``counters_since_delta_snapshot`` updates > 0)."""

    thread_id: str
    ns: str
    checkpoint_id: str
    parent_id: str | None
    deltas: frozenset[str] = frozenset()
