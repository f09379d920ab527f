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

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import attrs

from msstore.codec import default_codec
from msstore.errors import BatchError, InvalidArgument, OutcomeUnknown, VersionConflict
from msstore.protocols import ChangeFeed, KeyValueStore
from msstore.records import Entry, Operation

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


def _check_timeout(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 86400:
        raise InvalidArgument(f"timeout must be seconds in (0, 86400] or None, got {value!r}")
    return float(value)


def _within(seconds: float, name: str, fn: Callable[[], Detail]) -> Detail:
    """``fn()`` on a worker thread, waited for at most ``seconds``; past that,
    ``OutcomeUnknown`` (the thread is left to finish on its own: Python cannot stop it)."""
    done = threading.Event()
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as err:  # (handed to the waiting caller)
            outcome.append((False, err))
        finally:
            done.set()

    threading.Thread(target=work, name=f"msstore-saga-step {name}", daemon=True).start()
    if not done.wait(seconds):
        raise OutcomeUnknown(
            f"step {name!r} did not finish within its {seconds:g} s timeout; it may still "
            "finish, so its compensation runs too",
            key=name,
            limit=seconds,
        )
    ok, value = outcome[0]
    if not ok:
        raise value
    return dict(value)


@attrs.frozen
class FunctionStep:
    """A step from your functions: ``action(given)`` returns a JSON mapping (or None) and
    ``compensation(detail)`` undoes it (None: nothing to undo). An action interrupted by a
    crash is taken as not done (``landed`` is None), so it must be safe to run again.
    ``timeout``: seconds the action may take; past them the step fails and, since the action
    may still finish, its compensation runs as well (with a detail saying
    ``outcome_unknown``), so it must tolerate an action that did not happen."""

    name: str = attrs.field(converter=_check_name)
    action: Callable[[StepInput], Mapping[str, Any] | None]
    compensation: Callable[[Mapping[str, Any]], None] | None = None
    timeout: float | None = attrs.field(default=None, converter=_check_timeout)

    def prepare(self, given: StepInput) -> Detail:
        """Nothing to note before the action: ``{}``."""
        return {}

    def run(self, given: StepInput, intent: Mapping[str, Any]) -> Detail:
        """Call ``action(given)`` (within ``timeout``); its mapping is the detail."""
        if self.timeout is None:
            return dict(self.action(given) or {})
        return _within(self.timeout, self.name, lambda: dict(self.action(given) or {}))

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
    undoes it in another transaction (None: nothing to undo). ``timeout``: seconds the
    transaction's statements may take; the server cancels them past it and the step fails,
    nothing committed."""

    name: str = attrs.field(converter=_check_name)
    fn: Callable[[Any], Mapping[str, Any] | None]
    compensation: Callable[[Any, Mapping[str, Any]], None] | None = None  # (conn, detail)
    isolation: str = attrs.field(default="READ COMMITTED")
    timeout: float | None = attrs.field(default=None, converter=_check_timeout)

    @isolation.validator
    def _isolation(self, _: object, value: object) -> None:
        if value not in ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"):
            raise InvalidArgument(
                "isolation must be 'READ COMMITTED', 'REPEATABLE READ' or 'SERIALIZABLE', "
                f"got {value!r}"
            )


def _found(entry: Entry | None) -> tuple[int, Any, bool]:
    """(revision, value, live) of a key's newest entry, markers included; (0, None, False)
    for a key with no history."""
    if entry is None:
        return 0, None, False
    live = entry.operation is Operation.PUT
    return entry.revision, (entry.value if live else None), live


def _latest(kv: KeyValueStore, key: str) -> Entry | None:
    """The key's newest entry, markers included (``ChangeFeed.latest`` where the store has
    it, else the end of its history)."""
    if isinstance(kv, ChangeFeed):
        return kv.latest(key)
    history = kv.history(key)
    return history[-1] if history else None


def prepare_kv(steps: Sequence[_KvStep], given: StepInput) -> list[Detail]:
    """The intents of KV steps on distinct keys, read together: one round trip per store."""
    entries: dict[tuple[int, str], Entry | None] = {}
    stores: dict[int, tuple[KeyValueStore, list[str]]] = {}
    for step in steps:
        stores.setdefault(id(step.kv), (step.kv, []))[1].append(step.key)
    for kv, keys in stores.values():
        if isinstance(kv, ChangeFeed) and len(keys) > 1:
            found = kv.latest_many(keys)
        else:
            found = {k: _latest(kv, k) for k in keys}
        entries.update(((id(kv), k), e) for k, e in found.items())
    return [step.intent(entries[id(step.kv), step.key], given) for step in steps]


def run_kv(
    steps: Sequence[_KvStep], given: StepInput, intents: Sequence[Detail]
) -> list[Detail | Exception]:
    """Run the actions of KV steps on distinct keys: plain puts to one store in one round trip
    (``put_many``), the others one by one. Each step's detail, or the error it met; a put
    that failed does not keep the others from landing."""
    outcomes: list[Detail | Exception | None] = [None] * len(steps)
    puts = [i for i, s in enumerate(steps) if type(s) is KvPut]
    if len(puts) > 1 and all(steps[i].kv is steps[puts[0]].kv for i in puts):
        revisions: Sequence[int | Exception]
        try:
            batch = [steps[i] for i in puts]
            revisions = batch[0].kv.put_many(
                [(s.key, s.value) for s in batch if isinstance(s, KvPut)]
            )
        except BatchError as err:
            revisions = err.results
        except Exception as err:  # (the whole batch: each step meets the same error)
            revisions = [err] * len(puts)
        for i, revision in zip(puts, revisions, strict=True):
            step = steps[i]
            assert isinstance(step, KvPut)
            outcomes[i] = (
                revision
                if isinstance(revision, Exception)
                else step._written(intents[i], revision, step.value, True)
            )
    for i, step in enumerate(steps):
        if outcomes[i] is None:
            try:
                outcomes[i] = step.run(given, intents[i])
            except Exception as err:
                outcomes[i] = err
    return [o for o in outcomes if o is not None]


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
        return self.intent(_latest(self.kv, self.key), given)

    def intent(self, entry: Entry | None, given: StepInput) -> Detail:
        """The intent from the key's newest entry ``entry`` (what :meth:`prepare` reads)."""
        revision, value, live = _found(entry)
        return {"key": self.key, "found_revision": revision, "found": value, "existed": live}

    def _written(self, intent: Mapping[str, Any], revision: int, value: Any, live: bool) -> Detail:
        return {**intent, "revision": revision, "value": value, "live": live}

    def run(self, given: StepInput, intent: Mapping[str, Any]) -> Detail:
        """Do the write (each KV step says which)."""
        raise NotImplementedError

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
        if "revision" not in detail:  # an action whose outcome was unknown
            landed = self.landed(detail)
            if landed is None:
                return Compensated(False, {"landed": False})
            detail = landed
        revision, value, live = _found(_latest(self.kv, self.key))
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
            return self._conflict(detail["revision"], _found(_latest(self.kv, self.key))[0])
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

    def intent(self, entry: Entry | None, given: StepInput) -> Detail:
        """What the key holds now, and ``fn`` of it: the value the step will write."""
        intent = super().intent(entry, given)
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
