"""Property tests of every CRDT: merge laws, convergence, sequential models, codec round trips.

Example counts come from the Hypothesis profile (tests/conftest.py): 200 in CI, 2,000 with
HYPOTHESIS_PROFILE=thorough.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from msstore.codec import default_codec
from msstore.conflicts import (
    CRDT,
    GCounter,
    LWWMap,
    LWWRegister,
    MVRegister,
    ORSet,
    PNCounter,
    Stamp,
    from_doc,
)

NODES = st.sampled_from(["a", "b", "c"])
ELEMS = st.one_of(st.integers(-5, 5), st.sampled_from(["x", "y", "z", ""]))
VALUES = st.one_of(
    st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3)
)
STAMPS = st.builds(Stamp, st.integers(0, 50), st.integers(0, 3), NODES)


def _replay(empty: CRDT, ops: list[tuple[Any, ...]], apply: Any) -> list[CRDT]:
    """Three replicas; each op runs on one; ("sync", i, j) merges j into i."""
    replicas = [empty, empty, empty]
    for op in ops:
        if op[0] == "sync":
            replicas[op[1]] = replicas[op[1]].merge(replicas[op[2]])
        else:
            replicas[op[1]] = apply(replicas[op[1]], op)
    return replicas


def _ops(op: st.SearchStrategy[tuple[Any, ...]]) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    sync = st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2))
    return st.lists(st.one_of(op, sync), max_size=25)


def _gcounter(r: Any, op: tuple[Any, ...]) -> Any:
    return r.increment("abc"[op[1]], op[2])


def _pncounter(r: Any, op: tuple[Any, ...]) -> Any:
    return r.increment("abc"[op[1]], op[2]) if op[0] == "inc" else r.decrement("abc"[op[1]], op[2])


def _orset(r: Any, op: tuple[Any, ...]) -> Any:
    return r.add("abc"[op[1]], op[2]) if op[0] == "add" else r.remove(op[2])


def _lww(r: Any, op: tuple[Any, ...]) -> Any:
    return r.assign(op[2], op[3])


def _mv(r: Any, op: tuple[Any, ...]) -> Any:
    return r.assign("abc"[op[1]], op[2])


def _lwwmap(r: Any, op: tuple[Any, ...]) -> Any:
    if op[0] == "set":
        return r.set(op[2], op[3], op[4])
    return r.remove(op[2], op[4])


REPLICA = st.integers(0, 2)
STATES = {
    "gcounter": (GCounter(), _gcounter, st.tuples(st.just("inc"), REPLICA, st.integers(0, 9))),
    "pncounter": (
        PNCounter(),
        _pncounter,
        st.tuples(st.sampled_from(["inc", "dec"]), REPLICA, st.integers(0, 9)),
    ),
    "orset": (ORSet(), _orset, st.tuples(st.sampled_from(["add", "add", "rm"]), REPLICA, ELEMS)),
    "lww": (LWWRegister(), _lww, st.tuples(st.just("set"), REPLICA, VALUES, STAMPS)),
    "mvreg": (MVRegister(), _mv, st.tuples(st.just("set"), REPLICA, VALUES)),
    "lwwmap": (
        LWWMap(),
        _lwwmap,
        st.tuples(
            st.sampled_from(["set", "rm"]),
            REPLICA,
            st.sampled_from(["k1", "k2", "k3"]),
            VALUES,
            STAMPS,
        ),
    ),
}


@st.composite
def three_states(draw: Any) -> tuple[CRDT, CRDT, CRDT]:
    """Three states of one CRDT type, reached by random operations and partial syncs."""
    name = draw(st.sampled_from(sorted(STATES)))
    empty, apply, op = STATES[name]
    replicas = _replay(empty, draw(_ops(op)), apply)
    return replicas[0], replicas[1], replicas[2]


@given(three_states())
def test_merge_is_commutative(states: tuple[CRDT, CRDT, CRDT]) -> None:
    a, b, _ = states
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).value == b.merge(a).value


@given(three_states())
def test_merge_is_associative(states: tuple[CRDT, CRDT, CRDT]) -> None:
    a, b, c = states
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@given(three_states())
def test_merge_is_idempotent(states: tuple[CRDT, CRDT, CRDT]) -> None:
    a, b, _ = states
    assert a.merge(a) == a
    ab = a.merge(b)
    assert ab.merge(b) == ab and ab.merge(a) == ab


@given(three_states())
def test_every_state_round_trips_through_the_codec(states: tuple[CRDT, CRDT, CRDT]) -> None:
    for state in states:
        stored = default_codec.encode(state.to_doc())
        back = from_doc(default_codec.decode(stored))
        assert back == state and back.value == state.value


# Sequential models: one replica, operations in order, against plain Python.


@given(st.lists(st.tuples(st.sampled_from(["inc", "dec"]), NODES, st.integers(0, 100))))
def test_pncounter_agrees_with_an_int(ops: list[tuple[str, str, int]]) -> None:
    counter, model = PNCounter(), 0
    for kind, node, n in ops:
        counter = counter.increment(node, n) if kind == "inc" else counter.decrement(node, n)
        model += n if kind == "inc" else -n
    assert counter.value == model
    assert GCounter().increment("a", 3).increment("b", 4).value == 7


@given(st.lists(st.tuples(st.booleans(), NODES, ELEMS)))
def test_orset_agrees_with_a_set(ops: list[tuple[bool, str, Any]]) -> None:
    orset, model = ORSet(), set()
    for add, node, elem in ops:
        orset = orset.add(node, elem) if add else orset.remove(elem)
        if add:
            model.add(elem)
        else:
            model.discard(elem)
    assert orset.value == model


@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["k1", "k2"]), VALUES)))
def test_lwwmap_agrees_with_a_dict(ops: list[tuple[bool, str, Any]]) -> None:
    lwwmap, model = LWWMap(), {}
    for tick, (put, key, value) in enumerate(ops):
        stamp = Stamp(tick, 0, "a")
        if put:
            lwwmap, model[key] = lwwmap.set(key, value, stamp), value
        else:
            lwwmap = lwwmap.remove(key, stamp)
            model.pop(key, None)
    assert lwwmap.value == dict(sorted(model.items()))


@given(st.lists(VALUES, min_size=1))
def test_registers_agree_with_the_last_assignment(values: list[Any]) -> None:
    lww, mv = LWWRegister(), MVRegister()
    for tick, value in enumerate(values):
        lww = lww.assign(value, Stamp(tick, 0, "a"))
        mv = mv.assign("a", value)
    assert lww.value == values[-1] and mv.value == [values[-1]]


def test_add_wins_over_a_concurrent_remove() -> None:
    base = ORSet().add("a", "x")
    removed = base.remove("x")  # replica a removes the x it saw
    readded = base.add("b", "x")  # replica b adds x again, concurrently
    assert "x" in removed.merge(readded) and "x" in readded.merge(removed)
    assert "x" not in removed.merge(base)  # the remove wins over the add it observed


def test_lwwmap_remove_versus_update_goes_to_the_later_stamp() -> None:
    base = LWWMap().set("k", 1, Stamp(1, 0, "a"))
    update = base.set("k", 2, Stamp(5, 0, "b"))
    remove = base.remove("k", Stamp(4, 0, "a"))
    assert update.merge(remove).value == {"k": 2} == remove.merge(update).value
    later_remove = base.remove("k", Stamp(6, 0, "a"))
    assert update.merge(later_remove).value == {} == later_remove.merge(update).value


def test_concurrent_mv_assignments_are_siblings() -> None:
    base = MVRegister().assign("a", 0)
    left, right = base.assign("a", "L"), base.assign("b", "R")
    merged = left.merge(right)
    assert sorted(merged.value) == ["L", "R"]
    assert merged.assign("c", "both").value == ["both"]  # a later write supersedes both


class Replicas(RuleBasedStateMachine):
    """At least three replicas of a PN-Counter, an OR-Set and an LWW-Map; Hypothesis draws
    which replica acts, what it does, and which states travel where (duplicates and any order);
    after a full exchange every replica holds the same state, and the counter the exact sum."""

    replicas = Bundle("replicas")

    def __init__(self) -> None:
        super().__init__()
        self.states: list[dict[str, Any]] = []
        self.total = 0
        self.tick = 0

    @rule(target=replicas)
    @precondition(lambda self: len(self.states) < 5)
    def add_replica(self) -> int:
        self.states.append({"n": PNCounter(), "s": ORSet(), "m": LWWMap()})
        return len(self.states) - 1

    @rule(r=replicas, amount=st.integers(-5, 5))
    def count(self, r: int, amount: int) -> None:
        node, n = f"r{r}", self.states[r]["n"]
        self.states[r]["n"] = (
            n.increment(node, amount) if amount >= 0 else n.decrement(node, -amount)
        )
        self.total += amount

    @rule(r=replicas, elem=ELEMS, add=st.booleans())
    def change_set(self, r: int, elem: Any, add: bool) -> None:
        s = self.states[r]["s"]
        self.states[r]["s"] = s.add(f"r{r}", elem) if add else s.remove(elem)

    @rule(r=replicas, key=st.sampled_from(["k1", "k2"]), value=VALUES, remove=st.booleans())
    def change_map(self, r: int, key: str, value: Any, remove: bool) -> None:
        self.tick += 1
        stamp = Stamp(self.tick, 0, f"r{r}")
        m = self.states[r]["m"]
        self.states[r]["m"] = m.remove(key, stamp) if remove else m.set(key, value, stamp)

    @rule(src=replicas, dst=replicas)
    def deliver(self, src: int, dst: int) -> None:
        """Ship src's state to dst (possibly again: duplicates are allowed)."""
        for name in ("n", "s", "m"):
            self.states[dst][name] = self.states[dst][name].merge(self.states[src][name])

    @invariant()
    def converges_after_full_exchange(self) -> None:
        if len(self.states) < 3:
            return
        for name in ("n", "s", "m"):
            merged = self.states[0][name]
            for state in self.states[1:]:
                merged = merged.merge(state[name])
            for state in self.states:
                assert state[name].merge(merged) == merged  # nothing a replica knows is lost
        everything = self.states[0]["n"]
        for state in self.states[1:]:
            everything = everything.merge(state["n"])
        assert everything.value == self.total


TestReplicas = Replicas.TestCase
