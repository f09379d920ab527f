"""The PostgreSQL message log and task queue under concurrent first use of agents."""

from __future__ import annotations

import threading

import psycopg
import pytest

from msstore.backends.postgres import PostgresMessageLog, PostgresTaskQueue

pytestmark = pytest.mark.postgres


@pytest.fixture
def dsn(pg_state_dsn: str) -> str:
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE messages.log, messages.subscriptions, messages.channels, messages.cursors, "
            "tasks.queue, tasks.executions, messages.outbox CASCADE"
        )
    return pg_state_dsn


def run_together(work: list[threading.Thread]) -> None:
    for t in work:
        t.start()
    for t in work:
        t.join()


def test_threads_first_sending_to_one_new_agent_all_succeed(dsn: str) -> None:
    """Found by the demo: a thread took an agent for registered while another thread's
    transaction still held its registry row uncommitted, and its insert failed the foreign key
    check. Agents are now registered, and committed, before the write that references them."""
    errors: list[BaseException] = []
    with PostgresMessageLog(dsn) as log:
        log.create_channel("dm", "direct")
        start = threading.Barrier(8)

        def send(i: int) -> None:
            start.wait()
            try:
                for n in range(5):
                    log.send("dm", from_agent=f"sender{i}", to_agent="inbox", subject=f"m.{n}")
            except BaseException as err:  # surfaced below
                errors.append(err)

        run_together([threading.Thread(target=send, args=(i,)) for i in range(8)])
        assert errors == []
        assert len(log.inbox("inbox", limit=100)) == 40


def test_threads_first_enqueueing_for_one_new_agent_all_succeed(dsn: str) -> None:
    errors: list[BaseException] = []
    with PostgresTaskQueue(dsn) as queue:
        start = threading.Barrier(8)

        def enqueue() -> None:
            start.wait()
            try:
                for _ in range(5):
                    queue.enqueue("job", assigned_agent="specialist")
            except BaseException as err:  # surfaced below
                errors.append(err)

        run_together([threading.Thread(target=enqueue) for _ in range(8)])
        assert errors == []
        assert len(queue.claim("specialist", limit=100)) == 40
