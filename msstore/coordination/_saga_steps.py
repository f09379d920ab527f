"""The steps of a saga: your own functions, and KV writes whose compensation msstore derives.

A step has two halves. Its action runs forward and returns a ``detail`` (JSON) that the log
keeps; its compensation undoes the action from that detail. Before an action runs, its intent
(``prepare``) is logged, so that after a crash :meth:`Step.landed` can tell whether an action
nobody saw finish did happen.

A KV step's compensation restores what the step found, by compare-and-set on the revision the
step wrote: a value someone else wrote after the step is never overwritten, it is reported as a
conflict with both revisions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

import attrs

from msstore.codec import default_codec
from msstore.errors import InvalidArgument, VersionConflict
from msstore.protocols import KeyValueStore
from msstore.records import Operation

__all__ = [
    "Compensated",
    "FunctionStep",
    "KvCreate",
    "KvDelete",
    "KvPut",
    "KvUpdate",
    "KvUpdateWith",
    "SqlStep",
    "Step",
    "StepInput",
]

Detail = dict[str, Any]


@attrs.frozen
class StepInput:
    """What an action sees: the saga's context and the details of the steps done before it,
    by step name."""

    context: Mapping[str, Any]
    results: Mapping[str, Mapping[str, Any]]


@attrs.frozen
class Compensated:
    """A compensation's outcome: done, or (``conflict``) left alone because someone else wrote
    after the step; ``detail`` says what was found (for a KV step, both revisions)."""

    conflict: bool
    detail: Mapping[str, Any]


class Step(Protocol):
    """One step of a saga (see the module docstring)."""

    @property
    def name(self) -> str:
        """The step's name, unique in its saga."""
        ...

    def prepare(self, given: StepInput) -> Detail:
        """The intent logged before the action runs (JSON); ``{}`` if there is nothing to note."""
        ...

    def run(self, given: StepInput, intent: Mapping[str, Any]) -> Detail:
        """Do the action; return its detail (JSON). Raise to fail it."""
        ...

    def landed(self, intent: Mapping[str, Any]) -> Detail | None:
        """After a crash between intent and outcome: the action's detail if it happened,
        None if it did not."""
        ...

    def compensate(self, detail: Mapping[str, Any]) -> Compensated:
        """Undo the action that returned ``detail``. Raise to fail (it is retried)."""
        ...


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > 200:
        raise InvalidArgument(
            f"a step name must be a non-empty str of at most 200 characters, got {name!r}"
        )
    return name


@attrs.frozen
class FunctionStep:
    """A step from your functions: ``action(given)`` returns a JSON mapping (or None) and
    ``compensation(detail)`` undoes it (None: nothing to undo). An action interrupted by a
    crash is taken as not done (``landed`` is None), so it must be safe to run again."""

    name: str = attrs.field(converter=_check_name)
    action: Callable[[StepInput], Mapping[str, Any] | None]
    compensation: Callable[[Mapping[str, Any]], None] | None = None

    def prepare(self, given: StepInput) -> Detail:
        """Nothing to note before the action: ``{}``."""
        return {}

    def run(self, given: StepInput, intent: Mapping[str, Any]) -> Detail:
        """Call ``action(given)``; its mapping is the detail."""
        return dict(self.action(given) or {})

    def landed(self, intent: Mapping[str, Any]) -> Detail | None:
        """Unknowable for a function: taken as not done (None)."""
        return None

    def compensate(self, detail: Mapping[str, Any]) -> Compensated:
        """Call ``compensation(detail)``, if there is one."""
        if self.compensation is not None:
            self.compensation(detail)
        return Compensated(False, {})


@attrs.frozen
class SqlStep:
    """A step that runs ``fn(conn)`` in one transaction at ``isolation`` (``"READ COMMITTED"``,
    ``"REPEATABLE READ"``, ``"SERIALIZABLE"``), its outcome written in that same transaction:
    it commits exactly once. ``fn`` returns a JSON mapping (or None). ``compensation(detail)``
    undoes it in another transaction (None: nothing to undo)."""

    name: str = attrs.field(converter=_check_name)
    fn: Callable[[Any], Mapping[str, Any] | None]
    compensation: Callable[[Any, Mapping[str, Any]], None] | None = None  # (conn, detail)
    isolation: str = attrs.field(default="READ COMMITTED")

    @isolation.validator
    def _isolation(self, _: object, value: object) -> None:
        if value not in ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"):
            raise InvalidArgument(
                "isolation must be 'READ COMMITTED', 'REPEATABLE READ' or 'SERIALIZABLE', "
                f"got {value!r}"
            )


def _latest(kv: KeyValueStore, key: str) -> tuple[int, Any, bool]:
    """(revision, value, live) of the key's newest entry, markers included; (0, None, False)
    for a key with no history."""
    history = kv.history(key)
    if not history:
        return 0, None, False
    entry = history[-1]
    live = entry.operation is Operation.PUT
    return entry.revision, (entry.value if live else None), live


def _same(a: Any, b: Any) -> bool:
    return bool(default_codec.encode_canonical(a) == default_codec.encode_canonical(b))


@attrs.frozen
class _KvStep:
    """What every KV step shares: the intent (what the key held), recognising a landed write,
    and the compensation that restores what the step found unless someone wrote since."""

    kv: KeyValueStore
    key: str
    _verb: ClassVar[str] = ""

    def __attrs_post_init__(self) -> None:
        if not getattr(self, "name", ""):  # (each step class declares ``name``)
            object.__setattr__(self, "name", f"{self._verb} {self.key}")

    def prepare(self, given: StepInput) -> Detail:
        """What the key holds now: its newest revision (markers included), value and
        whether it is live."""
        revision, value, live = _latest(self.kv, self.key)
        return {"key": self.key, "found_revision": revision, "found": value, "existed": live}

    def _written(self, intent: Mapping[str, Any], revision: int, value: Any, live: bool) -> Detail:
        return {**intent, "revision": revision, "value": value, "live": live}

    def _expected(self, intent: Mapping[str, Any]) -> tuple[Any, bool]:
        """The value and liveness the action leaves (for ``landed``)."""
        raise NotImplementedError

    def landed(self, intent: Mapping[str, Any]) -> Detail | None:
        """The write of this step found in the key's history after the revision it found,
        or None."""
        # (Ours even if others wrote after it: the compensation then meets theirs and keeps it.)
        want, want_live = self._expected(intent)
        for entry in self.kv.history(self.key):
            if entry.revision <= intent["found_revision"]:
                continue
            live = entry.operation is Operation.PUT
            if live == want_live and (not live or _same(entry.value, want)):
                return self._written(intent, entry.revision, want, live)
        return None

    def compensate(self, detail: Mapping[str, Any]) -> Compensated:
        """Restore what the step found, by compare-and-set on the revision it wrote; a newer
        write by someone else is kept and reported (``conflict``, both revisions)."""
        revision, value, live = _latest(self.kv, self.key)
        found, existed = detail["found"], detail["existed"]
        if revision != detail["revision"]:
            if live == existed and (not live or _same(value, found)):
                return Compensated(False, {"revision": revision})  # already restored
            return self._conflict(detail["revision"], revision)
        try:
            if existed:
                new = self.kv.update(self.key, found, expected_revision=revision)
            else:
                new = self.kv.delete(self.key, expected_revision=revision)
        except VersionConflict:
            return self._conflict(detail["revision"], _latest(self.kv, self.key)[0])
        return Compensated(False, {"revision": new})

    def _conflict(self, ours: int, theirs: int) -> Compensated:
        """Someone wrote ``key`` after the step: their write is kept, both revisions said."""
        return Compensated(True, {"key": self.key, "ours": ours, "theirs": theirs})


@attrs.frozen
class KvPut(_KvStep):
    """Write ``value`` at ``key`` (over whatever is there); compensation restores what was."""

    value: Any = None
    name: str = attrs.field(default="", converter=str)

    _verb: ClassVar[str] = "put"

    def run(self, given: StepInput, intent: Mapping[str, Any]) -> Detail:
        """Put the value; its revision is the detail's."""
        return self._written(intent, self.kv.put(self.key, self.value), self.value, True)

    def _expected(self, intent: Mapping[str, Any]) -> tuple[Any, bool]:
        return self.value, True


@attrs.frozen
class KvCreate(KvPut):
    """Create ``key`` with ``value`` (``DuplicateKey`` if it has a live value); compensation
    deletes it."""

    _verb: ClassVar[str] = "create"

    def run(self, given: StepInput, intent: Mapping[str, Any]) -> Detail:
        """Create the key; its revision is the detail's."""
        return self._written(intent, self.kv.create(self.key, self.value), self.value, True)


@attrs.frozen
class KvUpdate(KvPut):
    """Write ``value`` only if ``key`` is at ``expected_revision`` (else ``VersionConflict``,
    the step fails); compensation restores what was."""

    expected_revision: int = 0

    _verb: ClassVar[str] = "update"

    def run(self, given: StepInput, intent: Mapping[str, Any]) -> Detail:
        """Update at ``expected_revision``; the new revision is the detail's."""
        revision = self.kv.update(self.key, self.value, expected_revision=self.expected_revision)
        return self._written(intent, revision, self.value, True)


@attrs.frozen
class KvDelete(_KvStep):
    """Delete ``key``; compensation writes back the value it had."""

    name: str = attrs.field(default="", converter=str)

    _verb: ClassVar[str] = "delete"

    def run(self, given: StepInput, intent: Mapping[str, Any]) -> Detail:
        """Delete the key; the marker's revision is the detail's."""
        return self._written(intent, self.kv.delete(self.key), None, False)

    def _expected(self, intent: Mapping[str, Any]) -> tuple[Any, bool]:
        return None, False


@attrs.frozen
class KvUpdateWith(_KvStep):
    """Replace ``key``'s value with ``fn(current)`` (None when absent) by compare-and-set, the
    step's intent pinning the value ``fn`` saw; compensation restores it."""

    fn: Callable[[Any], Any] = attrs.field(default=None)
    name: str = attrs.field(default="", converter=str)
    _verb: ClassVar[str] = "update_with"

    def __attrs_post_init__(self) -> None:
        if not callable(self.fn):
            raise InvalidArgument(f"fn must be callable, got {self.fn!r}")
        super().__attrs_post_init__()

    def prepare(self, given: StepInput) -> Detail:
        """What the key holds now, and ``fn`` of it: the value the step will write."""
        intent = super().prepare(given)
        return {**intent, "value": self.fn(intent["found"] if intent["existed"] else None)}

    def run(self, given: StepInput, intent: Mapping[str, Any]) -> Detail:
        """Write the prepared value by compare-and-set on the revision ``fn`` saw."""
        value = intent["value"]
        if intent["found_revision"] == 0:
            revision = self.kv.create(self.key, value)
        else:
            revision = self.kv.update(self.key, value, expected_revision=intent["found_revision"])
        return self._written(intent, revision, value, True)

    def _expected(self, intent: Mapping[str, Any]) -> tuple[Any, bool]:
        return intent["value"], True
