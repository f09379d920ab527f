"""msstore as LangGraph's checkpointer and long-term store (needs ``msstore[langgraph]``).

``MsstoreSaver(store)`` is a ``BaseCheckpointSaver`` over any
:class:`~msstore.graphs.CheckpointStore` (``MemoryCheckpointStore`` for a graph's tests,
``PostgresCheckpointStore`` for work); see :mod:`msstore.graphs` for what it guarantees.
``MsstoreStore(facts)`` is a ``BaseStore`` over a knowledge-base
:class:`~msstore.knowledge.FactStore`; see :mod:`msstore.knowledge._items` for its rules.
"""

from ._saver import MsstoreSaver
from ._store import LangChainEmbedder, MsstoreStore

__all__ = ["LangChainEmbedder", "MsstoreSaver", "MsstoreStore"]
