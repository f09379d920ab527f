"""Graph checkpoints: the state of an agent graph after each step (LangGraph's checkpoints),
its channel values stored once per version, pending writes once each, deleted threads kept
deleted. ``msstore.integrations.langgraph`` puts LangGraph's saver API on top."""

from ._records import Blob, StoredCheckpoint, StoredTuple, StoredWrite
from ._store import CheckpointStore, GraphCheckpoints

__all__ = [
    "Blob",
    "CheckpointStore",
    "GraphCheckpoints",
    "StoredCheckpoint",
    "StoredTuple",
    "StoredWrite",
]
