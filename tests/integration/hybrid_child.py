"""A writer process for the crash and multi-process tests (run as a script, not collected).

``python hybrid_child.py crash NATS_URL DSN BUCKET``: writes forever, printing ``ACK key i``
after each write the KV acknowledged, until it is killed.
``python hybrid_child.py share NATS_URL DSN BUCKET WRITER N``: writes N values to 50 shared
keys, closes (flushing), prints its flush stats as JSON.
``python hybrid_child.py serve NATS_URL DSN BUCKET``: a manager driven by JSON commands on
stdin, one answer line each on stdout (the model check's managers in separate processes).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from msstore.backends.nats import NatsClient, NatsConfig, NatsKV
from msstore.backends.postgres import PostgresStateStore
from msstore.buckets import BucketConfig
from msstore.conflicts import RetryPolicy
from msstore.errors import MsstoreError
from msstore.state import FlushPolicy, HybridStateManager, L1Cache


def serve(m: HybridStateManager) -> None:
    """Answer commands until stdin closes: ``{"op": ..., **args}`` -> ``{"ok": result}`` or
    ``{"error": class name, "message": ...}``."""
    ops: dict[str, Any] = {
        "put": lambda key, value, ttl=None: m.put(key, value, ttl=ttl),
        "delete": m.delete,
        "get": m.get,
        "increment": lambda key: (
            m.update_with(key, lambda v: (v or 0) + 1, policy=RetryPolicy.hot_key()).attempts
        ),
        "write": lambda key, value: m.update_with(key, lambda _: value).revision,
        "flush": m.flush,
        "reconcile": lambda: m.reconcile().read,
        "sweep": m.sweep,
        "failed": lambda: m.stats()["flush"]["failed"],
    }
    sys.stdout.write('{"ok": "ready"}\n')
    sys.stdout.flush()
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        try:
            answer: dict[str, Any] = {"ok": ops[op](**command)}
        except MsstoreError as err:
            answer = {"error": type(err).__name__, "message": str(err)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    m.close()


def main() -> None:
    mode, url, dsn, bucket = sys.argv[1:5]
    client = NatsClient(NatsConfig(servers=[url]))
    kv = NatsKV.open(client, BucketConfig(name=bucket, history=1))
    storage = PostgresStateStore(dsn)
    if mode == "serve":
        held = FlushPolicy(threshold=1_000_000, max_lag=3600, reconcile_every=0)
        serve(HybridStateManager(kv, storage, policy=held, l1=L1Cache(max_size=0)))
        return
    if mode == "crash":
        m = HybridStateManager(kv, storage, policy=FlushPolicy(threshold=200, max_lag=0.5))
        i = 0
        while True:
            key = f"c{i % 7}.k{i % 300}"
            m.put(key, {"i": i, "pad": "x" * (i % 50)})
            sys.stdout.write(f"ACK {key} {i}\n")
            sys.stdout.flush()
            i += 1
    writer, n = sys.argv[5], int(sys.argv[6])
    with HybridStateManager(kv, storage, policy=FlushPolicy(threshold=20)) as m:
        for i in range(n):
            m.put(f"shared.k{i % 50}", {"writer": writer, "i": i})
        m.flush()
        stats = m.stats()
    print(json.dumps(stats["flush"]))
    kv.close()
    storage.close()
    client.close()


if __name__ == "__main__":
    main()
