"""A saga log in process memory, with the PostgreSQL log's semantics (lease-guarded writes, an
atomic SQL step whose outcome is recorded only if its function returns), for tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs

from msstore.coordination import SagaLog, SagaState, SagaStatus, StepRecord

__all__ = ["MemorySagaLog"]

T = TypeVar("T")


class MemorySagaLog(SagaLog):
    """A :class:`~msstore.coordination.SagaLog` in a dict. ``atomic`` runs its function with
    ``conn=None``: a memory "transaction" is the function's own writes (``timeout`` is not
    enforced)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._sagas: dict[str, SagaState] = {}
        self._records: dict[str, list[StepRecord]] = {}

    def start(self, state: SagaState, records: Sequence[StepRecord] = ()) -> SagaState:
        with self._lock:
            if state.idempotency_key is not None:
                found = self.by_key(state.idempotency_key)
                if found is not None:
                    return found
            self._sagas[state.saga_id] = state
            self._records[state.saga_id] = list(records)
            return state

    def _holds(self, saga_id: str, owner: str) -> bool:
        state = self._sagas.get(saga_id)
        return state is not None and state.owner == owner and not state.status.ended

    def append(
        self,
        saga_id: str,
        owner: str,
        records: Sequence[StepRecord],
        *,
        status: SagaStatus,
        step: int,
        reason: str | None,
        lease_expires_at: float | None,
        now: float,
    ) -> bool:
        with self._lock:
            if not self._holds(saga_id, owner):
                return False
            self._records[saga_id].extend(records)
            self._sagas[saga_id] = attrs.evolve(
                self._sagas[saga_id],
                status=status,
                step=step,
                reason=reason,
                lease_expires_at=lease_expires_at,
                owner=owner if lease_expires_at is not None else None,
                updated_at=now,
            )
            return True

    def atomic(
        self,
        saga_id: str,
        owner: str,
        records: Sequence[StepRecord],
        fn: Callable[[Any], T],
        *,
        status: SagaStatus,
        step: int,
        reason: str | None,
        lease_expires_at: float | None,
        now: float,
        isolation: str,
        timeout: float | None = None,
    ) -> tuple[bool, T | None]:
        with self._lock:
            if not self._holds(saga_id, owner):
                return False, None
            out = fn(None)
            self.append(
                saga_id,
                owner,
                records,
                status=status,
                step=step,
                reason=reason,
                lease_expires_at=lease_expires_at,
                now=now,
            )
            return True, out

    def load(self, saga_id: str) -> tuple[SagaState, Sequence[StepRecord]] | None:
        with self._lock:
            state = self._sagas.get(saga_id)
            return None if state is None else (state, list(self._records[saga_id]))

    def by_key(self, idempotency_key: str) -> SagaState | None:
        with self._lock:
            return next(
                (s for s in self._sagas.values() if s.idempotency_key == idempotency_key), None
            )

    def take_over(self, saga_id: str, owner: str, lease_expires_at: float, now: float) -> bool:
        with self._lock:
            state = self._sagas.get(saga_id)
            if (
                state is None
                or state.status is SagaStatus.COMPLETED
                or state.status is SagaStatus.ROLLED_BACK
            ):
                return False
            if (
                state.owner is not None
                and state.lease_expires_at is not None
                and state.lease_expires_at > now
            ):
                return False
            status = state.status
            if status is SagaStatus.COMPENSATION_FAILED:
                status = SagaStatus.COMPENSATING
            self._sagas[saga_id] = attrs.evolve(
                state, owner=owner, lease_expires_at=lease_expires_at, status=status, updated_at=now
            )
            return True

    def sagas(
        self, statuses: Sequence[SagaStatus] | None = None, *, limit: int = 100
    ) -> list[SagaState]:
        with self._lock:
            found = [s for s in self._sagas.values() if statuses is None or s.status in statuses]
            return sorted(found, key=lambda s: s.created_at)[:limit]
