"""The task queue: its protocol, and the base class every implementation builds on.

:class:`TaskQueueBase` holds the whole queue but its storage: argument checks, the claim loop
(``claim(wait=)``), the rescue of expired leases, the decisions of :mod:`._task_rules`, the
errors, the open/closed state. An implementation supplies the primitives documented under
"Implementing a queue" in the class docstring, each atomic, each moving data only.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

from msstore._internal import telemetry
from msstore.codec import Codec, default_codec
from msstore.errors import InvalidArgument, StaleClaim
from msstore.protocols import Store
from msstore.spi import StoreBase, check_bool, check_pairs, check_seconds

from ._checks import check_agent, check_limit, check_task_id, check_time
from ._task_rules import (
    Move,
    Settlement,
    check_link,
    claim_order,
    completion,
    decide_move,
    default_lease,
    failure,
    first_per_unique_key,
    handler_error,
    lease_lost,
    no_task,
    purge_statuses,
    renewed,
    settled,
    stale_claim,
    work_report,
)
from ._tasks import (
    Claim,
    Execution,
    NewTask,
    Priority,
    QueueStats,
    Task,
    TaskSpec,
    TaskStatus,
    WorkReport,
    check_batch,
    check_specs,
    check_status,
    check_types,
)

__all__ = ["LinkCheck", "TaskQueue", "TaskQueueBase"]

log = logging.getLogger("msstore.work.tasks")

LinkCheck = Callable[[TaskStatus | None, bool, Mapping[uuid.UUID, Sequence[uuid.UUID]]], None]
"""``check(status, target_exists, graph)``: what a store calls inside ``_link`` before it adds a
dependency (raising refuses it)."""


@runtime_checkable
class TaskQueue(Store, Protocol):
    """A durable queue of agent work (memory: :class:`~msstore.backends.memory.MemoryTaskQueue`,
    PostgreSQL: :class:`~msstore.backends.postgres.PostgresTaskQueue`).

    Times are Unix seconds from the queue's clock. Bad input raises ``InvalidArgument`` (or a
    subclass) naming the field and writes nothing; an unknown task id raises ``NotFound``
    (``get`` returns ``None``); acting on a claim that is no longer the worker's raises
    ``StaleClaim``; an operation the task's status does not allow raises ``TaskStateError``.
    """

    @property
    def waiting(self) -> int:
        """How many ``claim(wait=...)`` calls are blocked waiting for work right now."""

    def enqueue(
        self,
        task_type: str,
        payload: Any = None,
        *,
        priority: Priority | int = Priority.NORMAL,
        scheduled_at: float | None = None,
        expires_at: float | None = None,
        max_retries: int = 3,
        max_execution_time: float = 3600.0,
        parent: uuid.UUID | None = None,
        depends_on: Sequence[uuid.UUID] = (),
        unique_key: str | None = None,
        assigned_agent: str | None = None,
        task_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Add a task; return its id.

        ``priority``: claim order (:class:`Priority` or 0-4); ``scheduled_at``: not claimable
        before (Unix seconds); ``expires_at``: never claimed after; ``max_retries``: failed
        attempts retried (0-100); ``max_execution_time``: the default lease, seconds;
        ``parent``: a task this one belongs to; ``depends_on``: a list of task ids that must
        complete first; ``unique_key``: with the key held by an unfinished task, nothing is
        added and that task's id is returned; ``assigned_agent``: only that agent may claim it;
        ``task_id``: the id to use (a UUID). Bad input raises ``InvalidArgument`` naming the
        field; a ``depends_on`` or ``parent`` that names no task raises ``NotFound``.
        """

    def enqueue_many(self, specs: Iterable[TaskSpec]) -> list[uuid.UUID]:
        """Add every task of ``specs`` atomically, in order; return their ids (tasks of the
        batch may depend on each other by ``task_id``; a cycle raises ``DependencyCycle``)."""

    def enqueue_batch(
        self,
        task_type: str,
        payloads: Iterable[Any],
        *,
        priority: Priority | int = Priority.NORMAL,
        scheduled_at: float | None = None,
        expires_at: float | None = None,
        max_retries: int = 3,
        max_execution_time: float = 3600.0,
        parent: uuid.UUID | None = None,
        assigned_agent: str | None = None,
    ) -> list[uuid.UUID]:
        """Add one task of ``task_type`` per payload of ``payloads`` (a list), all with the
        same options (as :meth:`enqueue` takes them), atomically and in order; return their
        ids. The options are checked once and each payload encoded once: the quick way to
        enqueue a burst of like tasks. Tasks with dependencies, unique keys or ids of their own
        go through :meth:`enqueue_many`."""

    def add_dependency(self, task_id: uuid.UUID, depends_on: uuid.UUID) -> None:
        """Make pending (or paused) ``task_id`` wait for ``depends_on`` too. ``NotFound`` for
        an unknown task, ``TaskStateError`` for one that is not pending or paused,
        ``DependencyCycle`` if the new edge would close a cycle (nothing is written then)."""

    def claim(
        self,
        agent_id: str,
        *,
        types: Sequence[str] | None = None,
        limit: int = 1,
        lease: float | None = None,
        wait: float | None = None,
    ) -> list[Claim]:
        """Take up to ``limit`` (1-1000) claimable tasks for ``agent_id`` (of ``types`` if
        given), in claim order (priority, then schedule, then enqueue order), each leased for
        ``lease`` seconds (default: its ``max_execution_time``). ``wait``: block up to that
        many seconds until work arrives; ``[]`` when none did."""

    def heartbeat(self, claim: Claim, *, lease: float | None = None) -> Claim:
        """Renew the claim's lease: ``lease`` seconds from now (default: the lease it was
        claimed with). ``StaleClaim`` once the lease ran out or the task moved on."""

    def complete(self, claim: Claim, result: Any = None) -> Task:
        """End the claimed task successfully with ``result`` (JSON); return it completed.
        ``StaleClaim`` (nothing written) once the claim is no longer current."""

    def fail(self, claim: Claim, error: str, *, retry: bool = True) -> Task:
        """End this attempt with ``error``: with ``retry`` and retries left, the task is pending
        again after :func:`~msstore.work.backoff`; otherwise it is ``failed`` (kept, with every
        attempt's error, as a dead letter). ``StaleClaim`` as for :meth:`complete`."""

    def complete_many(
        self, completions: Iterable[tuple[Claim, Any]]
    ) -> builtins.list[Task | StaleClaim]:
        """Complete a batch of claims, each ``(claim, result)``, in one round trip; return,
        in order, each task completed or the ``StaleClaim`` error (not raised) of a claim that
        is no longer current (nothing written for it). Bad input raises before anything is
        written."""

    def fail_many(
        self, failures: Iterable[tuple[Claim, str]], *, retry: bool = True
    ) -> builtins.list[Task | StaleClaim]:
        """:meth:`fail` for a batch of ``(claim, error)`` pairs in one round trip; returns as
        :meth:`complete_many` does."""

    def work(
        self,
        agent_id: str,
        handler: Callable[[Task], Any],
        *,
        types: Sequence[str] | None = None,
        limit: int = 10,
        lease: float | None = None,
        wait: float | None = None,
    ) -> WorkReport:
        """Claim up to ``limit`` tasks (as :meth:`claim` does, waiting up to ``wait``), call
        ``handler(task)`` for each in claim order, then settle the whole batch in one round
        trip: a task whose handler returned is completed with what it returned; one whose
        handler raised an ``Exception`` is failed with its type and message (retried while
        retries are left). Return what happened; ``claimed == 0`` means there was no work.
        A handler that runs longer than its lease loses the task (counted as ``stale``)."""

    def cancel(self, task_id: uuid.UUID) -> Task:
        """Cancel a task that is not finished (a running one's worker then gets StaleClaim)."""

    def pause(self, task_id: uuid.UUID) -> Task:
        """Hold a pending task back from claims until :meth:`resume`."""

    def resume(self, task_id: uuid.UUID) -> Task:
        """Make a paused task pending again."""

    def get(self, task_id: uuid.UUID) -> Task | None:
        """The task, or ``None`` if there is none with that id."""

    def executions(self, task_id: uuid.UUID) -> builtins.list[Execution]:
        """Every attempt at the task, in order (its error history); ``NotFound`` if there is
        no such task."""

    def stats(self) -> QueueStats:
        """Counts per status (every status present), the age of the oldest pending task."""

    def stuck(self) -> int:
        """Running tasks whose lease ran out that no claim has settled yet (their workers
        stopped; the next claim puts them back in line), counted up to a thousand."""

    def purge(self, *, completed_before: float, include_failed: bool = False) -> int:
        """Delete completed and cancelled tasks (and, with ``include_failed``, dead letters)
        that finished before ``completed_before``; return how many. Tasks an unfinished task
        depends on, and parents of other tasks, are kept."""

    def list(
        self,
        *,
        status: TaskStatus | None = None,
        type: str | None = None,
        agent: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Task]:
        """Tasks matching every filter given (``agent``: assigned to or claimed by), in
        enqueue order, at most ``limit`` (1-1000)."""


class TaskQueueBase(StoreBase, TaskQueue):
    """Everything a task queue does but storing tasks (see the module docstring).

    ``codec``: how payloads and results become JSON. ``poll``: how often a waiting
    ``claim`` looks again when no wake-up came. ``rescue_interval``: how often (queue clock
    seconds) a claim first settles running tasks whose lease ran out (0: before every claim).

    **Implementing a queue.** Subclass this and supply the primitives below. Each is atomic
    (all of it happens or none), and none decides a rule: the base passes the decision in
    (a :class:`~msstore.work.Settlement`, a :class:`~msstore.work.Move`, a check to call).
    ``now`` is the queue clock's reading for the call; a store that keeps its own clock
    (PostgreSQL's server clock, when no clock was given) compares with that one instead.

    * :meth:`_now`: the queue's clock (Unix seconds).
    * :meth:`_insert`: add checked tasks.
    * :meth:`_take`: mark claimable tasks running.
    * :meth:`_lapsed`: running tasks whose lease ran out.
    * :meth:`_settle`: end attempts, each only while its claim holds.
    * :meth:`_renew`: move a current claim's lease.
    * :meth:`_change`: apply a control move to one task.
    * :meth:`_link`: add one dependency after a check.
    * :meth:`_get`, :meth:`_executions`, :meth:`_counts`, :meth:`_select`: reads.
    * :meth:`_delete_finished`: purge.
    * :meth:`_wake_mark`, :meth:`_wait_for_work`: block until work may have arrived.
    * :meth:`_release` (from :class:`~msstore.spi.StoreBase`): free resources.

    The conformance suite (:class:`~msstore.testing.conformance.TaskQueueConformance`) checks
    an implementation against the rules.
    """

    def __init__(
        self, *, codec: Codec | None = None, poll: float = 0.5, rescue_interval: float = 0.0
    ) -> None:
        self._codec = codec or default_codec
        self.poll = check_seconds(poll, field="poll")
        self.rescue_interval = check_seconds(
            rescue_interval, field="rescue_interval", inclusive=True
        )
        self._next_rescue: float | None = None
        self._rescue_lock = threading.Lock()
        self._waiters = 0
        self._waiters_lock = threading.Lock()
        telemetry.track("queue", self)

    # Enqueue ---------------------------------------------------------------------------------

    def enqueue(
        self,
        task_type: str,
        payload: Any = None,
        *,
        priority: Priority | int = Priority.NORMAL,
        scheduled_at: float | None = None,
        expires_at: float | None = None,
        max_retries: int = 3,
        max_execution_time: float = 3600.0,
        parent: uuid.UUID | None = None,
        depends_on: Sequence[uuid.UUID] = (),
        unique_key: str | None = None,
        assigned_agent: str | None = None,
        task_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        spec = TaskSpec(
            task_type,
            payload,
            priority,  # type: ignore[arg-type]  # checked by check_specs
            scheduled_at,
            expires_at,
            max_retries,
            max_execution_time,
            parent,
            depends_on,  # type: ignore[arg-type]  # checked (and made a tuple) by check_specs
            unique_key,
            assigned_agent,
            task_id,
        )
        return self.enqueue_many([spec])[0]

    def enqueue_many(self, specs: Iterable[TaskSpec]) -> list[uuid.UUID]:
        return self._enqueue(specs, self._insert)

    def enqueue_batch(
        self,
        task_type: str,
        payloads: Iterable[Any],
        *,
        priority: Priority | int = Priority.NORMAL,
        scheduled_at: float | None = None,
        expires_at: float | None = None,
        max_retries: int = 3,
        max_execution_time: float = 3600.0,
        parent: uuid.UUID | None = None,
        assigned_agent: str | None = None,
    ) -> list[uuid.UUID]:
        template = TaskSpec(
            task_type,
            None,
            priority,  # type: ignore[arg-type]  # checked by check_batch
            scheduled_at,
            expires_at,
            max_retries,
            max_execution_time,
            parent,
            (),
            None,
            assigned_agent,
        )
        return self._enqueue_batch(template, payloads, self._insert)

    def _enqueue_batch(
        self,
        template: TaskSpec,
        payloads: Iterable[Any],
        insert: Callable[[Sequence[NewTask], float], Sequence[uuid.UUID]],
    ) -> list[uuid.UUID]:
        """:meth:`enqueue_batch` through ``insert`` (as :meth:`_enqueue`)."""
        self._check_open()
        now = self._now()
        tasks = check_batch(template, payloads, now=now, codec=self._codec)
        return list(insert(tasks, now)) if tasks else []

    def _enqueue(
        self,
        specs: Iterable[TaskSpec],
        insert: Callable[[Sequence[NewTask], float], Sequence[uuid.UUID]],
    ) -> list[uuid.UUID]:
        """:meth:`enqueue_many` through ``insert`` (a store may insert another way, e.g. on the
        caller's connection)."""
        self._check_open()
        now = self._now()
        tasks = check_specs(specs, now=now, codec=self._codec)
        if not tasks:
            return []
        rows, same_as = first_per_unique_key(tasks)
        ids = insert(rows, now)
        return [ids[i] for i in same_as]

    def add_dependency(self, task_id: uuid.UUID, depends_on: uuid.UUID) -> None:
        check_task_id(task_id)
        check_task_id(depends_on, field="depends_on")
        self._check_open()

        def check(
            status: TaskStatus | None,
            target_exists: bool,
            graph: Mapping[uuid.UUID, Sequence[uuid.UUID]],
        ) -> None:
            check_link(task_id, depends_on, status=status, target_exists=target_exists, graph=graph)

        self._link(task_id, depends_on, check)

    # Claims ----------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return self._waiters

    def claim(
        self,
        agent_id: str,
        *,
        types: Sequence[str] | None = None,
        limit: int = 1,
        lease: float | None = None,
        wait: float | None = None,
    ) -> list[Claim]:
        agent = check_agent(agent_id)
        wanted = check_types(types)
        limit = check_limit(limit)
        seconds = None if lease is None else check_seconds(lease, field="lease")
        until = None if wait is None else time.monotonic() + check_seconds(wait, field="wait")
        self._check_open()
        if until is None:
            return self._claim_now(agent, wanted, limit, seconds)
        while True:
            mark = self._wake_mark()  # before looking: a wake-up after it is never missed
            claims = self._claim_now(agent, wanted, limit, seconds)
            if claims:
                return claims
            left = until - time.monotonic()
            if left <= 0:
                return []
            with self._counted_waiter():
                self._wait_for_work(mark, min(left, self.poll))
            self._check_open()

    @contextmanager
    def _counted_waiter(self) -> Iterator[None]:
        with self._waiters_lock:
            self._waiters += 1
        try:
            yield
        finally:
            with self._waiters_lock:
                self._waiters -= 1

    def _claim_now(
        self, agent: str, types: frozenset[str] | None, limit: int, lease: float | None
    ) -> list[Claim]:
        now = self._now()
        self._rescue(now)
        tasks = sorted(self._take(agent, types, limit, lease, now), key=claim_order)
        return [Claim(t, agent, t.attempts, t.lease_expires_at or 0.0) for t in tasks]

    def _rescue(self, now: float) -> None:
        """Settle running tasks whose lease ran out (at most every ``rescue_interval``)."""
        with self._rescue_lock:
            if self._next_rescue is not None and now < self._next_rescue:
                return
            self._next_rescue = now + self.rescue_interval
        lapsed = self._lapsed(now)
        if lapsed:
            self._settle([lease_lost(t) for t in lapsed])

    def heartbeat(self, claim: Claim, *, lease: float | None = None) -> Claim:
        claim = _check_claim(claim)
        seconds = default_lease(claim) if lease is None else check_seconds(lease, field="lease")
        self._check_open()
        expires = self._renew(claim, seconds)
        if expires is None:
            raise stale_claim(claim, self._get(claim.task_id))
        return renewed(claim, expires)

    def complete(self, claim: Claim, result: Any = None) -> Task:
        claim = _check_claim(claim)
        encoded = self._codec.encode_canonical(result)
        self._check_open()
        return self._finish(completion(claim, encoded))

    def fail(self, claim: Claim, error: str, *, retry: bool = True) -> Task:
        claim = _check_claim(claim)
        _check_error(error)
        check_bool(retry, field="retry")
        self._check_open()
        return self._finish(failure(claim, error, retry=retry))

    def _finish(self, settlement: Settlement) -> Task:
        (outcome,) = self._finish_many([settlement])
        if isinstance(outcome, StaleClaim):
            raise outcome
        return outcome

    def complete_many(
        self, completions: Iterable[tuple[Claim, Any]]
    ) -> builtins.list[Task | StaleClaim]:
        pairs = _check_batch(completions, field="completions", of="(claim, result) pairs")
        settlements = [completion(c, self._codec.encode_canonical(r)) for c, r in pairs]
        self._check_open()
        return self._finish_many(settlements)

    def fail_many(
        self, failures: Iterable[tuple[Claim, str]], *, retry: bool = True
    ) -> builtins.list[Task | StaleClaim]:
        pairs = _check_batch(failures, field="failures", of="(claim, error) pairs")
        check_bool(retry, field="retry")
        settlements = [failure(c, _check_error(e), retry=retry) for c, e in pairs]
        self._check_open()
        return self._finish_many(settlements)

    def work(
        self,
        agent_id: str,
        handler: Callable[[Task], Any],
        *,
        types: Sequence[str] | None = None,
        limit: int = 10,
        lease: float | None = None,
        wait: float | None = None,
    ) -> WorkReport:
        if not callable(handler):
            raise InvalidArgument(f"handler must be callable, got {handler!r}")
        claims = self.claim(agent_id, types=types, limit=limit, lease=lease, wait=wait)
        settlements: builtins.list[Settlement] = []
        for claim in claims:
            try:
                result = handler(claim.task)
            except Exception as err:  # the handler's failure is the task's, not the worker's
                log.debug("task %s failed in its handler", claim.task_id, exc_info=True)
                settlements.append(failure(claim, handler_error(err), retry=True))
                continue
            try:
                encoded = self._codec.encode_canonical(result)
            except InvalidArgument as err:
                settlements.append(failure(claim, handler_error(err), retry=False))
                continue
            settlements.append(completion(claim, encoded))
        outcomes = self._finish_many(settlements) if settlements else []
        return work_report(settlements, outcomes)

    def _finish_many(self, settlements: Sequence[Settlement]) -> builtins.list[Task | StaleClaim]:
        """Apply ``settlements`` in one ``_settle``; each task settled or its stale claim."""
        if not settlements:
            return []
        applied = self._settle(settlements)
        outcomes: builtins.list[Task | StaleClaim] = []
        for settlement, at in zip(settlements, applied, strict=True):
            claim = settlement.claim
            if at is None:
                outcomes.append(stale_claim(claim, self._get(claim.task_id)))
                continue
            result = (
                None if settlement.result is None else self._codec.decode(settlement.result.data)
            )
            task = settled(claim.task, settlement, at, result)
            outcomes.append(task)
            if claim.task.started_at is not None:
                telemetry.histogram(
                    "task_duration_seconds", task.status.value, bounds=telemetry.TASK_BUCKETS
                ).observe(max(0.0, at - claim.task.started_at))
        return outcomes

    # Control ---------------------------------------------------------------------------------

    def cancel(self, task_id: uuid.UUID) -> Task:
        return self._move(task_id, "cancel")

    def pause(self, task_id: uuid.UUID) -> Task:
        return self._move(task_id, "pause")

    def resume(self, task_id: uuid.UUID) -> Task:
        return self._move(task_id, "resume")

    def _move(self, task_id: uuid.UUID, verb: str) -> Task:
        check_task_id(task_id)
        self._check_open()
        return self._change(task_id, lambda task: decide_move(task, verb))

    # Reading ---------------------------------------------------------------------------------

    def get(self, task_id: uuid.UUID) -> Task | None:
        check_task_id(task_id)
        self._check_open()
        return self._get(task_id)

    def executions(self, task_id: uuid.UUID) -> builtins.list[Execution]:
        check_task_id(task_id)
        self._check_open()
        runs = self._executions(task_id)
        if runs is None:
            raise no_task(task_id)
        return runs

    def stuck(self) -> int:
        self._check_open()
        return len(self._lapsed(self._now()))

    def stats(self) -> QueueStats:
        self._check_open()
        counts, oldest, now = self._counts()
        every = {s.value: counts.get(s, 0) for s in TaskStatus}
        return QueueStats(
            counts=every,
            oldest_pending_age_s=0.0 if oldest is None else max(0.0, now - oldest),
            total=sum(every.values()),
        )

    def purge(self, *, completed_before: float, include_failed: bool = False) -> int:
        before = check_time(completed_before, field="completed_before")
        assert before is not None
        check_bool(include_failed, field="include_failed")
        self._check_open()
        return self._delete_finished(purge_statuses(include_failed), before)

    def list(
        self,
        *,
        status: TaskStatus | None = None,
        type: str | None = None,
        agent: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Task]:
        wanted = check_status(status)
        if type is not None and builtins.type(type) is not str:
            raise InvalidArgument(f"type must be a str or None, got {type!r}")
        if agent is not None:
            check_agent(agent, field="agent")
        check_limit(limit)
        self._check_open()
        return self._select(wanted, type, agent, limit)

    # The primitives --------------------------------------------------------------------------

    def _now(self) -> float:
        """The queue's clock, Unix seconds."""
        raise NotImplementedError

    def _insert(self, tasks: Sequence[NewTask], now: float) -> Sequence[uuid.UUID]:
        """Add ``tasks`` (checked; ids and unique keys distinct) pending, atomically, in order
        (their ``seq`` increases in this order), created at ``now``, with their dependencies.

        A task whose ``unique_key`` an unfinished stored task holds is not added: its place
        in the result holds that task's id. Raise ``no_task(id, field=...)`` for a
        ``depends_on`` or ``parent`` that names neither a stored task nor one of ``tasks``,
        and ``task_id_taken(id)`` for an id a stored task has. Wake waiting claims."""
        raise NotImplementedError

    def _take(
        self, agent: str, types: frozenset[str] | None, limit: int, lease: float | None, now: float
    ) -> Iterable[Task]:
        """Mark the first ``limit`` tasks :func:`~msstore.work.claimable` by ``agent`` (in
        :func:`~msstore.work.claim_order`) running: attempts + 1, ``claimed_by`` the agent,
        ``started_at`` now, the lease ``lease`` seconds (default: the task's
        ``max_execution_time``), and an execution row opened; return them changed, in any
        order. Two concurrent takes never return the same task."""
        raise NotImplementedError

    def _lapsed(self, now: float) -> builtins.list[Task]:
        """Running tasks whose lease ran out (at most a thousand)."""
        raise NotImplementedError

    def _settle(self, settlements: Sequence[Settlement]) -> builtins.list[float | None]:
        """Apply each settlement whose claim still holds (the task running, at the claim's
        attempt, by its agent, with its lease not run out; for ``lapsed`` ones, run out):
        the task's ``status``; ``lease_expires_at`` cleared; ``retried``: ``retry_count`` + 1,
        ``claimed_by`` cleared, ``scheduled_at`` moved ``retry_in`` seconds on when given;
        ``finished``: ``completed_at`` set; ``result`` and ``last_error`` when given; the
        attempt's execution row closed as ``run_status`` with the result or error. Wake
        waiting claims when a completed task has dependents. Return, per settlement, the time
        it was applied, or ``None`` where its claim no longer held (nothing written)."""
        raise NotImplementedError

    def _renew(self, claim: Claim, seconds: float) -> float | None:
        """Set a current claim's lease to ``seconds`` from now; return the new expiry, or
        ``None`` when the claim no longer holds (nothing written)."""
        raise NotImplementedError

    def _change(self, task_id: uuid.UUID, decide: Callable[[Task], Move]) -> Task:
        """Atomically: read the task (``no_task`` if none), ``move = decide(task)`` (which may
        raise: nothing is written), then apply it: ``status`` = ``move.to``, lease cleared,
        ``completed_at`` set when ``move.finished``; when ``move.ends_run``, the running
        execution closes failed with :data:`~msstore.work.RUN_CANCELLED`; wake waiting claims
        when ``move.wakes``. Return the task as changed."""
        raise NotImplementedError

    def _link(self, task_id: uuid.UUID, depends_on: uuid.UUID, check: LinkCheck) -> None:
        """Atomically, with the dependency graph held still: call ``check(status of task_id or
        None, whether depends_on exists, the dependency edges reachable from depends_on)``
        (which may raise: nothing is written), then add the dependency (once)."""
        raise NotImplementedError

    def _get(self, task_id: uuid.UUID) -> Task | None:
        raise NotImplementedError

    def _executions(self, task_id: uuid.UUID) -> builtins.list[Execution] | None:
        """The task's execution rows by attempt, or ``None`` if there is no such task."""
        raise NotImplementedError

    def _counts(self) -> tuple[Mapping[TaskStatus, int], float | None, float]:
        """Tasks per status, the ``created_at`` of the oldest pending one (``None``: none),
        and the time now on the store's clock."""
        raise NotImplementedError

    def _select(
        self, status: TaskStatus | None, task_type: str | None, agent: str | None, limit: int
    ) -> builtins.list[Task]:
        """Tasks of ``status`` and ``task_type`` (each if given) assigned to or claimed by
        ``agent`` (if given), in ``seq`` order, at most ``limit``."""
        raise NotImplementedError

    def _delete_finished(self, statuses: frozenset[TaskStatus], before: float) -> int:
        """Delete tasks of ``statuses`` whose ``completed_at`` is before ``before``, except
        those an unfinished task depends on and those another task names as its parent;
        return how many."""
        raise NotImplementedError

    def _wake_mark(self) -> object:
        """A token for :meth:`_wait_for_work`, taken before a claim looks for work."""
        raise NotImplementedError

    def _wait_for_work(self, mark: object, timeout: float) -> bool:
        """Block until work may have arrived since ``mark`` was taken (an enqueue, a
        completion with dependents, a resume, a close), or ``timeout`` seconds; a spurious
        early return is allowed. Return whether woken."""
        raise NotImplementedError


def _check_batch(items: object, *, field: str, of: str) -> builtins.list[tuple[Claim, Any]]:
    """A batch of ``(claim, value)`` pairs: claims checked, each claim at most once (a task's
    stale claim may stand beside its current one)."""
    pairs = [(_check_claim(c), v) for c, v in check_pairs(items, field=field, of=of)]
    seen: set[tuple[uuid.UUID, int]] = set()
    for claim, _ in pairs:
        key = (claim.task_id, claim.attempt)
        if key in seen:
            raise InvalidArgument(
                f"{field}: the claim on task {claim.task_id} (attempt {claim.attempt}) appears "
                "twice in one batch"
            )
        seen.add(key)
    return pairs


def _check_error(error: object) -> str:
    if type(error) is not str or not error:
        raise InvalidArgument(f"error must be a non-empty str, got {error!r}")
    return error


def _check_claim(claim: object) -> Claim:
    if not isinstance(claim, Claim):
        raise InvalidArgument(f"expected a Claim (from claim()), got {claim!r}")
    return claim
