"""The graph tests' saver factory: a saver on a fixture's checkpoint store, with the KV log the
fixture made for it (``kind`` ``"nats"``). (A module of its own: pytest imports ``conftest`` under
a name of its own, so state kept there is not what a test importing it sees.)"""

from __future__ import annotations

import weakref
from typing import Any

from msstore.graphs import CheckpointStore
from msstore.integrations.langgraph import MsstoreSaver

LOGS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
OPEN: list[MsstoreSaver] = []


def saver_for(store: CheckpointStore, **kw: Any) -> MsstoreSaver:
    """A saver on ``store``, logging to the fixture's KV bucket when it has one (closed when
    the test ends)."""
    saver = MsstoreSaver(store, log=LOGS.get(store), **kw)
    OPEN.append(saver)
    return saver


def log_of(store: CheckpointStore) -> Any:
    """The fixture's KV log for ``store``, None when it has none."""
    return LOGS.get(store)
