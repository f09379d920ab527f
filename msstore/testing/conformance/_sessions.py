"""The cases every :class:`~msstore.work.SessionStore` passes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from msstore.errors import InvalidArgument, SerializationError
from msstore.testing._clock import FakeClock
from msstore.work import MIN_TOKEN_LENGTH, SessionStore, SessionType, token_hash

from ._closing import check_closing

__all__ = ["SessionStoreConformance"]


class SessionStoreConformance:
    """Cases for :class:`~msstore.work.SessionStore`. Needs fixture
    ``sessions_factory``: a callable taking a clock, returning a fresh, empty store."""

    @pytest.fixture
    def clock(self) -> FakeClock:
        """Fixture: the fake clock the store is made with."""
        return FakeClock()

    @pytest.fixture
    def sessions(
        self, sessions_factory: Callable[[Callable[[], float]], SessionStore], clock: FakeClock
    ) -> Iterator[SessionStore]:
        """Fixture: a fresh session store from ``sessions_factory(clock)``, closed after the
        case."""
        store = sessions_factory(clock)
        yield store
        store.close()

    def test_a_store_is_a_context_manager_and_refuses_work_once_closed(
        self, sessions_factory: Callable[[Callable[[], float]], SessionStore], clock: FakeClock
    ) -> None:
        check_closing(lambda: sessions_factory(clock), lambda s: s.open(agent="a", ttl=60))

    def test_open_returns_a_long_random_token_and_get_finds_the_session(
        self, sessions: SessionStore, clock: FakeClock
    ) -> None:
        opened = sessions.open(agent="a1", ttl=60, data={"step": 1}, permissions={"read": True})
        assert opened.token is not None and len(opened.token) >= MIN_TOKEN_LENGTH
        found = sessions.get(opened.token)
        assert found is not None and found.session_id == opened.session_id
        assert (found.agent, found.data, found.permissions) == ("a1", {"step": 1}, {"read": True})
        assert found.token is None  # the store does not keep it
        assert found.expires_at == pytest.approx(clock() + 60)
        other = sessions.open(user="u@example.com", ttl=60, session_type=SessionType.API)
        assert other.token != opened.token and other.user == "u@example.com"

    def test_an_unknown_token_is_none(self, sessions: SessionStore) -> None:
        assert sessions.get("x" * 43) is None
        assert sessions.touch("x" * 43) is None
        assert sessions.end("x" * 43) is False

    def test_a_session_expires_and_touch_slides_its_expiry(
        self, sessions: SessionStore, clock: FakeClock
    ) -> None:
        token = sessions.open(agent="a", ttl=10).token
        assert token is not None
        clock.advance(8)
        touched = sessions.touch(token)
        assert touched is not None and touched.expires_at == pytest.approx(clock() + 10)
        clock.advance(8)
        assert sessions.get(token) is not None  # 16 s after open, 8 after the touch
        clock.advance(3)
        assert sessions.get(token) is None
        assert sessions.touch(token) is None  # an expired session cannot be revived

    def test_update_replaces_the_data(self, sessions: SessionStore) -> None:
        token = sessions.open(agent="a", ttl=60, data={"v": 1}).token
        assert token is not None
        updated = sessions.update(token, {"v": 2})
        assert updated is not None and updated.data == {"v": 2}
        found = sessions.get(token)
        assert found is not None and found.data == {"v": 2}

    def test_end_ends_a_session(self, sessions: SessionStore) -> None:
        token = sessions.open(agent="a", ttl=60).token
        assert token is not None
        assert sessions.end(token) is True
        assert sessions.get(token) is None
        assert sessions.end(token) is False

    def test_sweep_deletes_only_expired_sessions(
        self, sessions: SessionStore, clock: FakeClock
    ) -> None:
        short = sessions.open(agent="a", ttl=5).token
        long = sessions.open(agent="b", ttl=500).token
        assert short is not None and long is not None
        clock.advance(10)
        assert sessions.sweep() == 1
        assert sessions.get(long) is not None

    def test_the_store_keeps_only_the_token_hash(self, sessions: SessionStore) -> None:
        token = sessions.open(agent="a", ttl=60).token
        assert token is not None
        assert sessions.get(token_hash(token)) is None  # the hash is not a token

    @pytest.mark.parametrize("token", ["short", "", 42, None, b"x" * 40], ids=repr)
    def test_a_token_that_cannot_be_one_is_refused(
        self, sessions: SessionStore, token: object
    ) -> None:
        with pytest.raises(InvalidArgument, match="token"):
            sessions.get(token)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"ttl": 0}, "ttl"),
            ({"ttl": -5}, "ttl"),
            ({"ttl": True}, "ttl"),
            ({"agent": None}, "agent or a user"),
            ({"session_type": "batch"}, "session_type"),
            ({"permissions": ["all"]}, "permissions"),
            ({"agent": "a b"}, "agent"),
        ],
        ids=lambda v: v if isinstance(v, str) else None,
    )
    def test_bad_open_input_names_the_field(
        self, sessions: SessionStore, kwargs: dict[str, object], field: str
    ) -> None:
        args: dict[str, object] = {"agent": "a", "ttl": 60, **kwargs}
        with pytest.raises(InvalidArgument, match=field):
            sessions.open(**args)  # type: ignore[arg-type]

    def test_data_that_is_not_json_is_refused(self, sessions: SessionStore) -> None:
        with pytest.raises(SerializationError):
            sessions.open(agent="a", ttl=60, data={"when": object()})
