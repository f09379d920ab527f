"""Items against a small sequential model: puts, deletes, ttl, reads that refresh, clock
advances, sweeps, two writers and restarts (a new ``Items`` on the same store)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from msstore.knowledge import HashingEmbedder, ItemPut, Items, KnowledgeBase
from msstore.testing import FakeClock
from tests.conftest import KNOWLEDGE_DIM

NAMESPACES = [("a",), ("a", "b")]
KEYS = ["k1"]


def machine(make_store: Callable[[], Any]) -> type[RuleBasedStateMachine]:
    class ItemsModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = FakeClock()
            self.store = make_store()
            self.writers = [self._writer(), self._writer()]
            # (namespace, key) -> (value, expires at or None, ttl or None)
            self.model: dict[tuple[tuple[str, ...], str], tuple[Any, float | None, float | None]]
            self.model = {}

        def _writer(self) -> Items:
            kb = KnowledgeBase(
                self.store,
                HashingEmbedder(dim=KNOWLEDGE_DIM),
                clock=self.clock,
                owns_store=False,
            )
            return Items(kb, clock=self.clock)

        def _live(self, ref: tuple[tuple[str, ...], str]) -> Any:
            found = self.model.get(ref)
            if found is None or (found[1] is not None and found[1] <= self.clock()):
                return None
            return found

        @rule(
            w=st.integers(0, 1),
            ns=st.sampled_from(NAMESPACES),
            key=st.sampled_from(KEYS),
            n=st.integers(0, 9),
            ttl=st.sampled_from([None, 10.0, 10.0]),
        )
        def put(self, w: int, ns: tuple[str, ...], key: str, n: int, ttl: float | None) -> None:
            self.writers[w].put(ItemPut(ns, key, {"n": n}, text=f"note {n}", ttl=ttl))
            self.model[(ns, key)] = ({"n": n}, None if ttl is None else self.clock() + ttl, ttl)

        @rule(w=st.integers(0, 1), ns=st.sampled_from(NAMESPACES), key=st.sampled_from(KEYS))
        def delete(self, w: int, ns: tuple[str, ...], key: str) -> None:
            self.writers[w].put(ItemPut(ns, key, None))
            self.model.pop((ns, key), None)

        @rule(
            w=st.integers(0, 1),
            ns=st.sampled_from(NAMESPACES),
            key=st.sampled_from(KEYS),
            refresh=st.sampled_from([True, True, False]),
        )
        def get(self, w: int, ns: tuple[str, ...], key: str, refresh: bool) -> None:
            got = self.writers[w].get(ns, key, refresh=refresh)
            live = self._live((ns, key))
            assert (got is None) == (live is None), (got, live)
            if got is not None:
                assert got.value == live[0]
                if refresh and live[2] is not None:
                    self.model[(ns, key)] = (live[0], self.clock() + live[2], live[2])

        @rule(
            w=st.integers(0, 1),
            ns=st.sampled_from([(), *NAMESPACES]),
            refresh=st.sampled_from([True, True, False]),
        )
        def search(self, w: int, ns: tuple[str, ...], refresh: bool) -> None:
            found = self.writers[w].search(ns, limit=100, refresh=refresh)
            want = {r: v for r in self.model if r[0][: len(ns)] == ns and (v := self._live(r))}
            assert {(i.namespace, i.key): dict(i.value) for i in found} == {
                r: v[0] for r, v in want.items()
            }
            if refresh:
                for r, (value, _, ttl) in want.items():
                    if ttl is not None:
                        self.model[r] = (value, self.clock() + ttl, ttl)

        @rule(seconds=st.sampled_from([3.0, 7.0, 30.0]))
        def advance(self, seconds: float) -> None:
            self.clock.advance(seconds)

        @rule(w=st.integers(0, 1))
        def sweep(self, w: int) -> None:
            self.writers[w].sweep()
            for ref in [r for r in self.model if self._live(r) is None]:
                del self.model[ref]

        @rule(w=st.integers(0, 1))
        def restart(self, w: int) -> None:
            self.writers[w] = self._writer()

        @invariant()
        def search_sees_exactly_the_live_items(self) -> None:
            found = self.writers[0].search((), limit=100, refresh=False)
            seen = {(i.namespace, i.key): dict(i.value) for i in found}
            want = {r: v[0] for r in self.model if (v := self._live(r)) is not None}
            assert seen == want

    return ItemsModel


@pytest.mark.parametrize("examples", [400])
def test_items_follow_the_model(
    fact_store_factory: Callable[[], Any], request: pytest.FixtureRequest, examples: int
) -> None:
    is_pg = "postgres" in request.node.callspec.id

    def fresh() -> Any:
        store = fact_store_factory()
        if is_pg:
            import psycopg

            with psycopg.connect(request.getfixturevalue("pg_knowledge_dsn")) as conn:
                conn.execute("TRUNCATE knowledge.facts CASCADE")
        return store

    model = machine(fresh)
    model.TestCase.settings = settings(
        max_examples=15 if is_pg else examples, stateful_step_count=25, deadline=None
    )
    model.TestCase().runTest()
