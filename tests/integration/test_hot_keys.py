"""Hot keys through the hybrid manager: many writers of one counter, none starved, none lost.

Threads of one manager take turns per key in process, so they never fight each other through
the server; two managers over one bucket (two processes, in effect) still meet compare-and-set
conflicts, which the resolver settles after re-reading (after the wait, not before it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from msstore.conflicts import CRDTMerge, PNCounter, RetryPolicy, from_doc
from msstore.protocols import DataStorage, KeyValueStore
from msstore.state import HybridStateManager

Stores = Callable[..., tuple[KeyValueStore, DataStorage]]


def _increment(managers: list[HybridStateManager], threads: int, each: int) -> list[int]:
    errors: list[BaseException] = []
    attempts: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        m = managers[i % len(managers)]
        merge = CRDTMerge(PNCounter)
        try:
            for _ in range(each):
                done = m.update_with(
                    "hot.visits",
                    lambda c, w=f"w{i}": c.increment(w),  # type: ignore[misc]
                    resolver=merge,
                    policy=RetryPolicy.hot_key(),
                )
                with lock:
                    attempts.append(done.attempts)
        except BaseException as err:  # surfaced below
            errors.append(err)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    return attempts


def test_eight_threads_of_one_manager_count_exactly(
    hybrid_stores: Stores, crash_reports: list[str]
) -> None:
    kv, storage = hybrid_stores()
    with HybridStateManager(kv, storage) as m:
        attempts = _increment([m], 8, 250)
        counter = from_doc(m.get("hot.visits"))
        assert isinstance(counter, PNCounter) and counter.value == 2000
        assert counter.p.counts == {f"w{i}": 250 for i in range(8)}
        assert max(attempts) == 1  # turns taken in process: no conflict through the server
        m.flush()
    crash_reports.append(f"hot key, 8 threads x 250 on one manager: max attempts {max(attempts)}")


def test_two_managers_of_four_threads_count_exactly(
    hybrid_stores: Stores, crash_reports: list[str]
) -> None:
    kv, storage = hybrid_stores()
    with HybridStateManager(kv, storage) as a, HybridStateManager(kv, storage) as b:
        attempts = _increment([a, b], 8, 250)
        entry = kv.get("hot.visits")  # (each manager's L1 holds its own last write)
        assert entry is not None
        counter = from_doc(entry.value)
        assert isinstance(counter, PNCounter) and counter.value == 2000
        assert counter.p.counts == {f"w{i}": 250 for i in range(8)}
        assert len(attempts) == 2000
    crash_reports.append(
        f"hot key, 2 managers x 4 threads x 250: max attempts {max(attempts)}, "
        f"mean {sum(attempts) / len(attempts):.2f}"
    )
