"""msstore as LangGraph's checkpointer (needs ``msstore[langgraph]``).

``MsstoreSaver(store)`` is a ``BaseCheckpointSaver`` over any
:class:`~msstore.graphs.CheckpointStore` (``MemoryCheckpointStore`` for a graph's tests,
``PostgresCheckpointStore`` for work); see :mod:`msstore.graphs` for what it guarantees.
"""

from ._saver import MsstoreSaver

__all__ = ["MsstoreSaver"]
