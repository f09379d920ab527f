"""A program that leaves its stores open, or whose server is down, ends quietly: nothing on
stderr but what the program itself prints (the stores' pools close at exit, and the pool's
connection warnings are not printed unless the program configures logging)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.postgres

LEFT_OPEN = """
import sys
from msstore.backends.postgres import Pools, PostgresStateStore, PostgresTaskQueue

queue = PostgresTaskQueue(sys.argv[1])
queue.enqueue("crawl")
store = PostgresStateStore(sys.argv[1])
store.store("agent-1.plan", {"step": 1})
pools = Pools(sys.argv[1]).open()
print("leaving without close()")
"""

SERVER_DOWN = """
import sys
from msstore.backends.postgres import PostgresTaskQueue
from msstore.errors import ConnectionFailed

queue = PostgresTaskQueue(sys.argv[1], connect_timeout=1)
try:
    queue.enqueue("crawl")
except ConnectionFailed as err:
    print("ConnectionFailed")
"""


def _run(program: str, dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(program), dsn],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_stores_left_open_end_quietly(pg_state_dsn: str) -> None:
    done = _run(LEFT_OPEN, pg_state_dsn)
    assert done.returncode == 0 and done.stdout == "leaving without close()\n"
    assert done.stderr == ""


def test_a_server_that_is_down_is_one_typed_error_and_no_noise() -> None:
    from msstore.servers import free_port

    done = _run(SERVER_DOWN, f"postgresql://msstore@127.0.0.1:{free_port()}/none")
    assert done.returncode == 0 and done.stdout == "ConnectionFailed\n"
    assert done.stderr == ""
