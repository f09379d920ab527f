"""The process a saga crash test kills: ``run`` drives orders until it kills itself (SIGKILL)
at the point it was told, or is killed from outside; ``resume`` is the other process that
takes over (its clock an hour ahead, so every lease has run out).

Each order ``n`` (of the run's ``prefix``): put ``<prefix>.a.<n>`` (which holds an initial
value), create ``<prefix>.b.<n>``, a check that refuses when ``n % 4 == 1``, the SQL step (a row
in ``crash_orders`` and a ``do`` row in ``crash_effects``; refused when ``n % 4 == 3``; its
compensation deletes the row and adds an ``undo`` row), and a last check that refuses when
``n % 4 == 2`` (after the SQL step committed).

Usage: python _saga_crash_worker.py run|resume DSN NATS_URL BUCKET PREFIX ORDERS POINT KILL_AT
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from msstore.backends.nats import NatsClient, NatsConfig, NatsKV
from msstore.backends.postgres import PostgresSagaLog
from msstore.buckets import BucketConfig
from msstore.conflicts import RetryPolicy
from msstore.coordination import (
    FunctionStep,
    KvCreate,
    KvPut,
    Saga,
    SagaRunner,
    SqlStep,
    StepInput,
)

now: dict[str, int] = {"order": -1}


def die(point: str, kill_point: str, kill_at: int) -> None:
    if point == kill_point and now["order"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


class KillingKV:
    """The bucket; the process dies right after a forward write of order ``kill_at`` lands, or
    after its first compensation write."""

    def __init__(self, kv: NatsKV, point: str, kill_at: int) -> None:
        self.kv, self.point, self.kill_at = kv, point, kill_at

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.kv, name)
        point = {
            "put": "after_kv_put",
            "create": "after_kv_create",
            "update": "in_kv_compensation",
            "delete": "in_kv_compensation",
        }.get(name)
        if point is None:
            return attr

        def write(*args: Any, **kwargs: Any) -> Any:
            out = attr(*args, **kwargs)
            die(point, self.point, self.kill_at)  # (after the write landed, before its outcome)
            return out

        return write


class KillingLog:
    """The saga log; the process dies before or after the SQL step's transaction."""

    def __init__(self, log: PostgresSagaLog, point: str, kill_at: int) -> None:
        self.log, self.point, self.kill_at = log, point, kill_at

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)

    def atomic(self, *args: Any, **kwargs: Any) -> Any:
        die("before_sql", self.point, self.kill_at)
        if self.point == "sql_random" and now["order"] == self.kill_at:
            # Dies somewhere in the transaction: in a statement, before, in or after COMMIT.
            delay = random.uniform(0.0, 0.003)
            threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
        out = self.log.atomic(*args, **kwargs)
        die("after_commit", self.point, self.kill_at)
        return out


def value(prefix: str, n: int, what: str) -> dict[str, Any]:
    return {"order": n, "what": what, "run": prefix}


def orders(kv: Any, prefix: str, count: int, point: str, kill_at: int) -> list[Saga]:
    def order(n: int) -> Saga:
        def check(refuse: bool) -> Any:
            def run(_: StepInput) -> Mapping[str, Any]:
                if refuse:
                    raise RuntimeError(f"order {n} refused")
                return {}

            return run

        def insert(conn: Any) -> Mapping[str, Any]:
            conn.execute("INSERT INTO crash_orders VALUES (%s, %s)", (prefix, n))
            conn.execute("INSERT INTO crash_effects VALUES (%s, %s, 'do')", (prefix, n))
            die("in_sql", point, kill_at)
            if n % 4 == 3:
                raise RuntimeError(f"order {n}: card declined")
            return {"order": n}

        def delete(conn: Any, detail: Mapping[str, Any]) -> None:
            conn.execute("DELETE FROM crash_orders WHERE run = %s AND n = %s", (prefix, n))
            conn.execute("INSERT INTO crash_effects VALUES (%s, %s, 'undo')", (prefix, n))
            die("in_sql_compensation", point, kill_at)

        return Saga(
            f"{prefix}-order-{n}",
            [
                KvPut(kv, f"{prefix}.a.{n}", value=value(prefix, n, "a")),
                KvCreate(kv, f"{prefix}.b.{n}", value=value(prefix, n, "b")),
                FunctionStep("check", check(n % 4 == 1)),
                SqlStep("insert", insert, delete),
                FunctionStep("confirm", check(n % 4 == 2)),
            ],
        )

    return [order(n) for n in range(count)]


def main() -> None:
    mode, dsn, url, bucket, prefix, count, point, kill_at = sys.argv[1:9]
    client = NatsClient(NatsConfig(servers=[url]))
    kv = NatsKV.open(client, BucketConfig(name=bucket, history=10))
    log = PostgresSagaLog(dsn)
    policy = RetryPolicy(attempts=2, base=0.001, cap=0.01)
    if mode == "run":
        sagas = orders(KillingKV(kv, point, int(kill_at)), prefix, int(count), point, int(kill_at))
        runner = SagaRunner(KillingLog(log, point, int(kill_at)), lease=5, policy=policy)
        for n, saga in enumerate(sagas):
            now["order"] = n
            runner.run(saga)
        print("all ran", flush=True)
    else:
        sagas = orders(kv, prefix, int(count), "", -1)
        runner = SagaRunner(
            log, sagas=sagas, lease=5, policy=policy, clock=lambda: time.time() + 3600
        )
        print(len(runner.recover()), "resumed", flush=True)
    log.close()
    kv.close()
    client.close()


if __name__ == "__main__":
    main()
