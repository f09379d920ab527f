"""The client-side deadline watchdog of the PostgreSQL stores: a call still blocked on its
connection when the deadline passes has the connection cut; one that finished is left alone;
a forked child gets a working watchdog of its own.

A socket pair stands in for a connection's socket (the watchdog only shuts a socket down);
what the stores make of a cut connection is tested against a real server in test_faults."""

from __future__ import annotations

import socket
import types
from collections.abc import Iterator

import pytest

from msstore.backends.postgres._deadline import guard

from ._fork import in_child


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(30)  # a watchdog that never fires fails the test instead of hanging it
    with ours, theirs:
        yield ours, theirs


def _conn(sock: socket.socket) -> types.SimpleNamespace:
    closed: list[bool] = []
    return types.SimpleNamespace(
        pgconn=types.SimpleNamespace(socket=sock.fileno()),
        close=lambda: closed.append(True),
        closed=closed,
    )


def test_a_call_blocked_past_its_deadline_has_its_connection_cut(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    conn = _conn(ours)
    with guard(conn, 0.05) as deadline:
        assert ours.recv(1) == b""  # returns only once the watchdog shut the socket down
    assert deadline is not None and deadline.fired
    assert conn.closed == [True]  # so that the pool drops it


def test_a_call_that_finished_in_time_is_left_alone(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    conn = _conn(ours)
    with guard(conn, 0.05) as early:
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"
    # A later call's deadline, earliest in the heap after the first one's, fires; the first
    # one's connection, returned in time, was not cut.
    with guard(_conn(ours), 0.1) as late:
        assert ours.recv(1) == b""
    assert early is not None and not early.fired and conn.closed == []
    assert late is not None and late.fired


def test_no_deadline_means_no_watchdog(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    with guard(_conn(ours), None) as deadline:
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"
    assert deadline is None


def test_a_forked_child_gets_a_watchdog_of_its_own(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    with guard(_conn(ours), 30):  # the parent's watchdog thread is running

        def cut_in_time() -> bool:  # the parent's thread does not exist in the child
            child, _other = socket.socketpair()
            child.settimeout(30)
            with guard(_conn(child), 0.05) as deadline:
                cut = child.recv(1) == b""
            return cut and deadline is not None and deadline.fired

        assert in_child(cut_in_time)
