"""The cases every outbox source and every event sink pass (the outbox relay's two seams)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence

import orjson
import pytest

from msstore.coordination import (
    EventSink,
    Failed,
    OutboxEvent,
    OutboxSource,
    Outcome,
    Published,
    Retry,
)
from msstore.errors import InvalidArgument
from msstore.testing._waiting import eventually

from ._closing import check_closing

__all__ = ["EventSinkConformance", "OutboxSourceConformance"]

SourceFactory = Callable[..., OutboxSource]
SinkFactory = Callable[[Mapping[str, Sequence[str]]], EventSink]


def _publish_all(events: Sequence[OutboxEvent]) -> list[Outcome]:
    return [Published("S", e.outbox_id) for e in events]


def _recording(into: list[OutboxEvent]) -> Callable[[Sequence[OutboxEvent]], list[Outcome]]:
    """A publish that stores everything and notes what it was given in ``into``."""

    def publish(events: Sequence[OutboxEvent]) -> list[Outcome]:
        into.extend(events)
        return _publish_all(events)

    return publish


class OutboxSourceConformance:
    """Cases for :class:`~msstore.coordination.OutboxSource`. Needs fixture
    ``outbox_factory``: ``make(keep_published=3600.0)`` returning a fresh source with no
    waiting, failed or published events, that has ``add(subject, payload)``."""

    @pytest.fixture
    def outbox(self, outbox_factory: SourceFactory) -> Iterator[OutboxSource]:
        """Fixture: a fresh outbox from ``outbox_factory``, closed after the case."""
        source = outbox_factory()
        yield source
        source.close()

    def test_a_source_is_a_context_manager_and_refuses_work_once_closed(
        self, outbox_factory: SourceFactory
    ) -> None:
        check_closing(outbox_factory, lambda o: o.relay_batch(10, _publish_all))

    def test_events_go_out_once_in_outbox_order(self, outbox: OutboxSource) -> None:
        added = [outbox.add(f"conf.s{i % 3}", {"i": i}) for i in range(7)]
        assert [e.outbox_id for e in added] == sorted(e.outbox_id for e in added)
        assert len({e.msg_id for e in added}) == 7
        assert orjson.loads(added[4].payload) == {"i": 4}
        seen: list[OutboxEvent] = []

        publish = _recording(seen)
        report = outbox.relay_batch(5, publish)
        assert (report.claimed, report.published, report.held_back) == (5, 5, 0)
        assert outbox.stats().depth == 2
        report = outbox.relay_batch(5, publish)
        assert (report.claimed, report.published) == (2, 2)
        assert [e.outbox_id for e in seen] == [e.outbox_id for e in added]
        assert [e.msg_id for e in seen] == [e.msg_id for e in added]
        assert outbox.relay_batch(5, publish).claimed == 0
        stats = outbox.stats()
        assert (stats.depth, stats.oldest_created_at, stats.failed) == (0, None, 0)

    def test_a_failed_event_is_set_aside_with_its_reason_and_can_be_retried(
        self, outbox: OutboxSource
    ) -> None:
        bad, good = outbox.add("conf.a", 1), outbox.add("conf.b", 2)

        def publish(events: Sequence[OutboxEvent]) -> list[Outcome]:
            return [Failed("no stream") if e == bad else Published("S", 1) for e in events]

        report = outbox.relay_batch(10, publish)
        assert (report.published, report.failed) == (1, 1)
        assert outbox.failures() == [(bad, "no stream")]
        assert (outbox.stats().depth, outbox.stats().failed) == (0, 1)
        assert outbox.relay_batch(10, publish).claimed == 0  # set aside: not claimed again
        assert outbox.retry_failed() == 1
        assert outbox.failures() == [] and outbox.stats().depth == 1
        again: list[OutboxEvent] = []
        outbox.relay_batch(10, _recording(again))
        assert again == [bad] and good.outbox_id != bad.outbox_id

    def test_an_event_to_retry_waits_in_its_place(self, outbox: OutboxSource) -> None:
        first, second = outbox.add("conf.a", 1), outbox.add("conf.a", 2)
        report = outbox.relay_batch(10, lambda events: [Retry("away")] * len(events))
        assert (report.retried, report.retry_reason) == (2, "away")
        stats = outbox.stats()
        assert stats.depth == 2 and stats.oldest_created_at == first.created_at
        seen: list[OutboxEvent] = []
        outbox.relay_batch(10, _recording(seen))
        assert seen == [first, second]

    def test_a_publish_that_raises_changes_nothing(self, outbox: OutboxSource) -> None:
        outbox.add("conf.a", 1)

        def broken(events: Sequence[OutboxEvent]) -> list[Outcome]:
            raise RuntimeError("the sink blew up")

        with pytest.raises(RuntimeError, match="blew up"):
            outbox.relay_batch(10, broken)
        assert outbox.stats().depth == 1
        assert outbox.relay_batch(10, _publish_all).published == 1

    def test_a_wrong_number_of_outcomes_is_refused_and_changes_nothing(
        self, outbox: OutboxSource
    ) -> None:
        outbox.add("conf.a", 1)
        with pytest.raises(InvalidArgument, match="outcomes"):
            outbox.relay_batch(10, lambda events: [])
        assert outbox.stats().depth == 1

    def test_a_later_event_waits_while_another_pass_holds_an_earlier_one_of_its_subject(
        self, outbox: OutboxSource
    ) -> None:
        head, tail, other = (
            outbox.add("conf.x", 1),
            outbox.add("conf.x", 2),
            outbox.add("conf.y", 3),
        )
        inner: list[OutboxEvent] = []
        reports = []

        def outer_publish(events: Sequence[OutboxEvent]) -> list[Outcome]:
            assert events == [head]  # a pass of one row holds the head of conf.x ...
            # ... while a second pass runs: it claims the rest, but holds conf.x's tail back.
            done = threading.Event()

            def second() -> None:
                reports.append(outbox.relay_batch(10, _recording(inner)))
                done.set()

            thread = threading.Thread(target=second)
            thread.start()
            assert done.wait(60)
            return _publish_all(events)

        outbox.relay_batch(1, outer_publish)
        assert inner == [other]
        assert (reports[0].claimed, reports[0].held_back) == (2, 1)
        seen: list[OutboxEvent] = []
        outbox.relay_batch(10, _recording(seen))
        assert seen == [tail]

    def test_published_events_are_purged_after_the_retention(
        self, outbox_factory: SourceFactory
    ) -> None:
        with outbox_factory(keep_published=0) as outbox:
            outbox.add("conf.a", 1)
            assert outbox.relay_batch(10, _publish_all).published == 1
            assert outbox.purge_published() == 0  # deleted as they were published
        with outbox_factory(keep_published=3600) as outbox:
            outbox.add("conf.a", 1)
            outbox.relay_batch(10, _publish_all)
            assert outbox.purge_published() == 0  # kept for an hour

    def test_wait_wakes_when_an_event_is_added(self, outbox: OutboxSource) -> None:
        # A wait counts from this thread's last pass; a source may wake once for nothing (when
        # it starts listening, say), but with nothing added it goes quiet.
        def quiet() -> bool:
            outbox.relay_batch(10, _publish_all)
            return not outbox.wait(0.05)

        eventually(quiet, what="an idle outbox's wait timing out")
        thread = threading.Thread(target=outbox.add, args=("conf.a", 1))
        thread.start()
        assert outbox.wait(60) is True
        thread.join()

    def test_bad_subjects_are_refused_and_nothing_is_added(self, outbox: OutboxSource) -> None:
        for subject in ("", "a b", "a.*", "a..b"):
            with pytest.raises(InvalidArgument, match="subject"):
                outbox.add(subject, 1)
        assert outbox.stats().depth == 0


class EventSinkConformance:
    """Cases for :class:`~msstore.coordination.EventSink`. Needs fixture ``event_sink_factory``:
    ``make(streams)`` returning a sink whose server has each stream of ``streams`` (name ->
    subject patterns) created empty, deduplicating by ``msg_id`` for at least a minute."""

    @pytest.fixture
    def names(self) -> tuple[str, str]:
        """Fixture: the two stream names the cases publish to."""
        tag = uuid.uuid4().hex[:10]
        return f"CONF_{tag}", f"conf.{tag}"

    @pytest.fixture
    def sink(self, event_sink_factory: SinkFactory, names: tuple[str, str]) -> Iterator[EventSink]:
        """Fixture: a fresh sink from ``event_sink_factory(streams)``, closed after the case."""
        stream, prefix = names
        made = event_sink_factory({stream: [f"{prefix}.>"]})
        yield made
        made.close()

    @staticmethod
    def _event(n: int, subject: str, payload: bytes = b"{}") -> OutboxEvent:
        return OutboxEvent(
            outbox_id=n, msg_id=str(uuid.uuid4()), subject=subject, payload=payload, created_at=0.0
        )

    def test_a_sink_is_a_context_manager_and_refuses_work_once_closed(
        self, event_sink_factory: SinkFactory, names: tuple[str, str]
    ) -> None:
        stream, prefix = names
        event = self._event(1, f"{prefix}.a")
        check_closing(
            lambda: event_sink_factory({stream: [f"{prefix}.>"]}),
            lambda sink: sink.publish_batch([event]),
        )

    def test_events_are_stored_in_order_each_once(
        self, sink: EventSink, names: tuple[str, str]
    ) -> None:
        stream, prefix = names
        events = [self._event(i, f"{prefix}.s{i % 2}") for i in range(1, 6)]
        outcomes = sink.publish_batch(events)
        assert all(isinstance(o, Published) and not o.duplicate for o in outcomes)
        published = [o for o in outcomes if isinstance(o, Published)]
        assert {o.stream for o in published} == {stream}
        for subject in (f"{prefix}.s0", f"{prefix}.s1"):  # in order within each subject
            seqs = [o.seq for o, e in zip(published, events, strict=True) if e.subject == subject]
            assert seqs == sorted(seqs)
        assert len({o.seq for o in published}) == 5
        assert sink.publish_batch([]) == []

    def test_an_event_published_again_is_a_duplicate(
        self, sink: EventSink, names: tuple[str, str]
    ) -> None:
        _, prefix = names
        event = self._event(1, f"{prefix}.a")
        (first,) = sink.publish_batch([event])
        (again,) = sink.publish_batch([event])
        assert isinstance(first, Published) and isinstance(again, Published)
        assert again.duplicate and (again.stream, again.seq) == (first.stream, first.seq)

    def test_a_subject_no_stream_captures_fails_alone(
        self, sink: EventSink, names: tuple[str, str]
    ) -> None:
        _, prefix = names
        lost = self._event(1, f"nowhere.{uuid.uuid4().hex[:8]}")
        kept = self._event(2, f"{prefix}.a")
        outcomes = sink.publish_batch([lost, kept])
        assert isinstance(outcomes[0], Failed) and lost.subject in outcomes[0].reason
        assert isinstance(outcomes[1], Published)

    def test_a_payload_over_the_limit_fails_alone(
        self, sink: EventSink, names: tuple[str, str]
    ) -> None:
        _, prefix = names
        big = self._event(1, f"{prefix}.a", b'"' + b"x" * (sink.max_payload + 1024) + b'"')
        small = self._event(2, f"{prefix}.a")
        outcomes = sink.publish_batch([big, small])
        assert isinstance(outcomes[0], Failed)
        assert isinstance(outcomes[1], Published)

    def test_a_reachable_sink_says_so(self, sink: EventSink) -> None:
        assert sink.reachable() is True
        assert sink.max_payload > 1024
