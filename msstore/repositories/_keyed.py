"""Typed repositories over the dual store: attrs records saved through a hybrid manager.

:class:`KeyedRepository` saves attrs records through a :class:`HybridStateManager`: a record is
unstructured by a cattrs converter, written to KV (flushed to SQL like any state), and
structured back on read (L1 -> KV -> SQL with hydration). Its key is
``<id>.<kind>``, so a record lands next to its agent's state. :class:`AgentRepository` is the
agent registry: :class:`Agent` records plus :meth:`AgentRepository.state`, the agent's state keys.

>>> from msstore.backends.memory import MemoryKV, MemoryTable
>>> from msstore.state import HybridStateManager
>>> with HybridStateManager(MemoryKV(), MemoryTable()) as m:
...     agents = AgentRepository(m)
...     saved = agents.save(Agent(id="a1", type="planner", name="Ada"))
...     agents.find("a1").name
'Ada'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import cattrs

from msstore import keys as keygrammar
from msstore.errors import InvalidArgument, NotFound, SerializationError
from msstore.protocols import Repository
from msstore.state import HybridStateManager

__all__ = ["Agent", "AgentRepository", "KeyedRepository"]

T = TypeVar("T")

AGENT_STATUSES = ("initializing", "active", "idle", "suspended", "terminated", "error")


def _status(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in AGENT_STATUSES:
        raise InvalidArgument(f"agent status must be one of {AGENT_STATUSES}, got {value!r}")


@attrs.define(kw_only=True)
class Agent:
    """An agent registry entry (an ``agents.registry`` row)."""

    id: str
    type: str
    name: str | None = None
    status: str = attrs.field(default="initializing", validator=_status)
    capabilities: list[str] = attrs.field(factory=list)
    metadata: dict[str, Any] = attrs.field(factory=dict)
    created_at: float = attrs.field(factory=time.time)
    version: int = 0  # KV revision of the stored record; set by the repository


class KeyedRepository(Repository[T, str]):
    """``Repository[T]`` for attrs class ``cls`` under keys ``<id>.<kind>``.

    ``id_of`` names the attribute holding the id (one key token). ``converter`` is a cattrs
    converter (a fresh ``cattrs.Converter`` by default). A record with a ``version`` attribute
    gets the KV revision it was stored at; ``update`` then refuses a stale copy with
    ``VersionConflict`` (optimistic locking).
    """

    def __init__(
        self,
        manager: HybridStateManager,
        cls: type[T],
        *,
        kind: str,
        id_of: str = "id",
        converter: cattrs.Converter | None = None,
    ) -> None:
        if not attrs.has(cls):
            raise InvalidArgument(f"{cls!r} is not an attrs class")
        keygrammar.check_key(kind)
        self.manager = manager
        self.cls = cls
        self.kind = kind
        self._id_of: Callable[[T], str] = lambda entity: getattr(entity, id_of)
        self._converter = converter or cattrs.Converter()
        self._versioned = "version" in attrs.fields_dict(cls)

    def key(self, id: str) -> str:
        """The state key of ``id``: ``<id>.<kind>`` (``id`` is one key token)."""
        if not isinstance(id, str) or "." in id:
            raise InvalidArgument(f"a repository id is one key token, got {id!r}")
        return keygrammar.check_key(f"{id}.{self.kind}")

    def _doc(self, entity: T) -> Any:
        if not isinstance(entity, self.cls):
            raise InvalidArgument(f"expected {self.cls.__name__}, got {type(entity).__name__}")
        doc = self._converter.unstructure(entity)
        if self._versioned:
            doc.pop("version", None)
        return doc

    def _entity(self, doc: Any, revision: int) -> T:
        if self._versioned:
            doc = {**doc, "version": revision}
        try:
            entity: T = self._converter.structure(doc, self.cls)  # type: ignore[assignment]
        except Exception as err:
            raise SerializationError(
                f"stored {self.kind} does not fit {self.cls.__name__}: {err}"
            ) from err
        return entity

    def save(self, entity: T) -> T:
        """Store ``entity`` (insert or replace); returns it with its new version."""
        key = self.key(self._id_of(entity))
        revision = self.manager.put(key, self._doc(entity))
        if not self._versioned:
            return entity
        saved: T = attrs.evolve(entity, version=revision)  # type: ignore[misc]
        return saved

    def find(self, id: str) -> T | None:
        found = self.manager.get_with_revision(self.key(id))
        return None if found is None else self._entity(found[0], found[1])

    def update(self, entity: T) -> T:
        """Replace an existing record; ``NotFound`` if there is none, ``VersionConflict`` if
        ``entity.version`` is not the stored one (versioned records)."""
        key = self.key(self._id_of(entity))
        found = self.manager.get_with_revision(key)
        if found is None:
            raise NotFound(f"no {self.kind} {self._id_of(entity)!r} to update", key=key)
        if not self._versioned:
            self.manager.put(key, self._doc(entity))
            return entity
        revision = self.manager.update(
            key,
            self._doc(entity),
            expected_revision=getattr(entity, "version", 0) or found[1],
        )
        updated: T = attrs.evolve(entity, version=revision)  # type: ignore[misc]
        return updated

    def delete(self, id: str) -> bool:
        key = self.key(id)
        if self.manager.get(key) is None:
            return False
        self.manager.delete(key)
        return True


class AgentRepository(KeyedRepository[Agent]):
    """The agent registry over the dual store: ``Agent`` records at ``<id>.registry``."""

    def __init__(self, manager: HybridStateManager, *, converter: cattrs.Converter | None = None):
        super().__init__(manager, Agent, kind="registry", converter=converter)

    def state(self, id: str) -> dict[str, Any]:
        """The agent's state: every other key of the agent, by name (``a1.plan`` -> ``plan``)."""
        self.find(id)  # a SQL hit hydrates the agent's keys into KV
        keys = [k for k in self.manager.kv.keys(prefix=f"{id}.") if k != self.key(id)]
        values = self.manager.get_many(keys)
        return {k.split(".", 1)[1]: v for k, v in values.items() if v is not None}
