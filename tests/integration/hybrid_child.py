"""A writer process for the crash and multi-process tests (run as a script, not collected).

``python hybrid_child.py crash NATS_URL DSN BUCKET``: writes forever, printing ``ACK key i``
after each write the KV acknowledged, until it is killed.
``python hybrid_child.py share NATS_URL DSN BUCKET WRITER N``: writes N values to 50 shared
keys, closes (flushing), prints its flush stats as JSON.
"""

from __future__ import annotations

import json
import sys

from msstore.backends.nats import NatsClient, NatsConfig, NatsKV
from msstore.backends.postgres import PostgresStateStore

from msstore.buckets import BucketConfig
from msstore.flushing import FlushPolicy
from msstore.hybrid import HybridStateManager


def main() -> None:
    mode, url, dsn, bucket = sys.argv[1:5]
    client = NatsClient(NatsConfig(servers=[url]))
    kv = NatsKV.open(client, BucketConfig(name=bucket, history=1))
    storage = PostgresStateStore(dsn)
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
