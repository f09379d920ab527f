"""Graph checkpoints: the state of an agent graph after each step (LangGraph's checkpoints),
its channel values stored once per version, pending writes once each, deleted threads kept
deleted, retention (newest N per thread, time-to-live). ``msstore.integrations.langgraph``
puts LangGraph's saver API on top."""

from ._deltas import MAX_CHAIN
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
from ._store import (
    DELTA_COUNTERS,
    CheckpointOptions,
    CheckpointStore,
    GraphCheckpoints,
    Retention,
    delta_channels,
    doomed,
)

__all__ = [
    "DELTA_COUNTERS",
    "MAX_CHAIN",
    "Blob",
    "CheckpointOptions",
    "CheckpointPut",
    "CheckpointStore",
    "GraphCheckpoints",
    "Head",
    "Outcome",
    "Retention",
    "StoredCheckpoint",
    "StoredTuple",
    "StoredWrite",
    "WritesPut",
    "delta_channels",
    "doomed",
]
