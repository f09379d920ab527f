"""`msstore sagas list|show|resume|compensate` on a real PostgreSQL saga log."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import pytest
from click.testing import CliRunner

psycopg = pytest.importorskip("psycopg", reason="needs msstore[postgres]")

from msstore.backends.postgres import PostgresSagaLog  # noqa: E402
from msstore.cli import main  # noqa: E402
from msstore.conflicts import RetryPolicy  # noqa: E402
from msstore.coordination import FunctionStep, Saga, SagaRunner, SagaStatus, StepInput  # noqa: E402
from msstore.testing import FakeClock  # noqa: E402

pytestmark = pytest.mark.postgres

BROKEN = {"undo": True}
UNDONE: list[str] = []


class _Stop(BaseException):
    pass


def _undo(detail: Mapping[str, Any]) -> None:
    if BROKEN["undo"]:
        raise RuntimeError("the ledger is down")
    UNDONE.append("one")


def _refuse(_: StepInput) -> Mapping[str, Any]:
    raise RuntimeError("refused")


def _stop(_: StepInput) -> Mapping[str, Any]:
    raise _Stop


SAGAS = [
    Saga("stuck", [FunctionStep("one", lambda g: {"n": 1}, _undo), FunctionStep("two", _refuse)]),
    Saga("stopped", [FunctionStep("one", lambda g: {}), FunctionStep("two", _stop)]),
]
HERE = f"{__name__}:SAGAS"


@pytest.fixture
def saga_dsn(pg_state_dsn: str) -> str:
    with psycopg.connect(pg_state_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE sagas.log CASCADE")
    return pg_state_dsn


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_an_operator_finds_a_stuck_saga_and_compensates_it_once_fixed(saga_dsn: str) -> None:
    BROKEN["undo"] = True
    UNDONE.clear()
    with PostgresSagaLog(saga_dsn) as log:
        result = SagaRunner(log, policy=RetryPolicy(attempts=1)).run(SAGAS[0])
    assert result.status is SagaStatus.COMPENSATION_FAILED
    listed = cli("sagas", "list", "--dsn", saga_dsn, "--status", "compensation_failed", "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = [json.loads(line) for line in listed.output.splitlines()]
    assert (row["saga_id"], row["name"], row["steps_left"]) == (result.saga_id, "stuck", ["one"])
    shown = cli("sagas", "show", "--dsn", saga_dsn, result.saga_id)
    assert shown.exit_code == 0 and "one compensation failed (compensation of 'one'" in shown.output
    BROKEN["undo"] = False
    done = cli("sagas", "compensate", "--dsn", saga_dsn, "--sagas", HERE, result.saga_id)
    assert done.exit_code == 0, done.output
    assert "rolled_back" in done.output and UNDONE == ["one"]


def test_resume_takes_over_a_saga_whose_process_stopped(saga_dsn: str) -> None:
    clock = FakeClock(start=time.time() - 1000)  # its lease ran out long ago
    with PostgresSagaLog(saga_dsn) as log, pytest.raises(_Stop):
        SagaRunner(log, clock=clock).run(SAGAS[1])
    resumed = cli("sagas", "resume", "--dsn", saga_dsn, "--sagas", HERE)
    assert resumed.exit_code == 0, resumed.output
    assert "rolled_back" in resumed.output and "1 saga(s) resumed" in resumed.output


@pytest.mark.parametrize(
    "args",
    [
        ["sagas", "resume", "--sagas", "no_such_module:X"],
        ["sagas", "resume", "--sagas", "json:dumps"],
        ["sagas", "resume", "--sagas", "nocolon"],
        ["sagas", "show", "not-a-uuid"],
        ["sagas", "list", "--status", "finished"],
        ["sagas", "compensate", "--sagas", HERE, "00000000-0000-0000-0000-000000000000"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(saga_dsn: str, args: list[str]) -> None:
    result = cli(*args[:2], "--dsn", saga_dsn, *args[2:])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
