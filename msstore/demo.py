"""``msstore demo``: a small multi-agent workload, printed as a short readable summary.

Agents write their state to the AGENT_STATE route (KV first), read it back, flush the latest
revisions to the table store through the version-guarded bulk upsert, and two of them race on
one shared key so that a compare-and-set conflict happens and is settled by re-reading.
This release runs on the memory backends; later ones move it onto embedded NATS and PostgreSQL.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from msstore.errors import VersionConflict
from msstore.records import Record
from msstore.registry import open_kv, open_storage
from msstore.routing import DataRouter, DataType

__all__ = ["run"]


def run(*, agents: int = 20, writes: int = 50, out: TextIO) -> dict[str, Any]:
    """Run the workload and print its summary to ``out``; return the figures."""
    route = DataRouter().route(DataType.AGENT_STATE)
    assert route.bucket is not None
    kv = open_kv(f"memory://{route.bucket}", history=5, ttl=route.ttl)
    table = open_storage("memory://agents_state")
    out.write(f"msstore demo: {agents} agents x {writes} state writes on memory backends\n")
    out.write(
        f"  route AGENT_STATE -> {route.layer.value} bucket {route.bucket} "
        f"(ttl {route.ttl}s, flushed to SQL: {route.flush_to_sql})\n"
    )

    start = time.perf_counter()
    for step in range(writes):
        kv.put_many(
            {
                f"agent.a{a:02d}.state": {"agent": a, "step": step, "status": "running"}
                for a in range(agents)
            }
        )
    write_s = time.perf_counter() - start
    total = agents * writes
    out.write(
        f"  wrote {total} states in {write_s * 1000:.1f} ms "
        f"({total / write_s:,.0f} writes/s, one batch per step)\n"
    )

    start = time.perf_counter()
    latest = kv.get_many(f"agent.a{a:02d}.state" for a in range(agents))
    ok = sum(1 for e in latest.values() if e is not None and e.value["step"] == writes - 1)
    read_s = time.perf_counter() - start
    out.write(f"  read back {ok}/{agents} latest states in {read_s * 1000:.3f} ms\n")

    now = time.time()
    result = table.upsert_many(
        Record(e.key, e.value, e.revision, now) for e in latest.values() if e is not None
    )
    stale = table.upsert_many(
        Record(e.key, e.value, e.revision - 1, now) for e in latest.values() if e is not None
    )
    out.write(
        f"  flushed {result.written} rows to the table store; replaying older revisions "
        f"wrote {stale.written} and skipped {stale.skipped} (version guard)\n"
    )

    # Two agents read the shared plan, both try to bump it; the second must re-read and retry.
    kv.put("shared.plan", {"version": 1, "owner": None})
    first = kv.get("shared.plan")
    second = kv.get("shared.plan")
    assert first is not None and second is not None
    kv.update("shared.plan", {"version": 2, "owner": "a00"}, expected_revision=first.revision)
    conflicts = 0
    try:
        kv.update("shared.plan", {"version": 2, "owner": "a01"}, expected_revision=second.revision)
    except VersionConflict as err:
        conflicts += 1
        out.write(f"  CAS conflict on shared.plan: {err}\n")
        fresh = kv.get("shared.plan")
        assert fresh is not None
        kv.update(
            "shared.plan",
            {"version": fresh.value["version"] + 1, "owner": "a01"},
            expected_revision=fresh.revision,
        )
    plan = kv.get("shared.plan")
    assert plan is not None

    figures = {
        "writes": total,
        "writes_per_s": round(total / write_s),
        "reads_ok": ok,
        "read_ms": round(read_s * 1000, 3),
        "flushed": result.written,
        "stale_flush_skipped": stale.skipped,
        "cas_conflicts": conflicts,
        "shared_plan": plan.value,
        "history_kept": len(kv.history("agent.a00.state")),
    }
    out.write(f"  conflict settled: shared.plan = {plan.value} after {conflicts} CAS conflict\n")
    out.write(f"  history kept per key: {figures['history_kept']} revisions (bucket history 5)\n")
    kv.close()
    table.close()
    return figures
