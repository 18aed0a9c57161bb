"""The consumer loop: offsets advance only past messages whose workflow durably exists."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from record_deleter.adapters.memory_broker import (
    InMemoryBroker,
    InMemoryRequestSource,
)
from record_deleter.domain.errors import BrokerUnavailable, HandOffUnavailable
from record_deleter.domain.handoff import HandOff, HandOffGaveUp, RetryBudget
from record_deleter.domain.messages import OutboundMessage, encode_request
from record_deleter.domain.model import InboundMessage, RecordId
from record_deleter.domain.ports import WorkflowStarter
from tests import builders

pytestmark = pytest.mark.unit

REQUESTS = "records_to_be_deleted"
DEAD_LETTERS = "records_to_be_deleted.dlq"
GROUP = "record-deleter"
FAST_BUDGET = RetryBudget(deadline_seconds=0.05, first_delay=0.01)  # delays 0.01, 0.02: 3 attempts


class FakeStarter(WorkflowStarter):
    """A WorkflowStarter that records what it durably started and fails on demand."""

    def __init__(self, failures: int = 0, *, always_fail: frozenset[str] = frozenset()) -> None:
        self.failures_left = failures
        self.always_fail = always_fail
        self.attempts: list[tuple[str, int]] = []
        self.started: list[tuple[str, int]] = []
        self.messages: list[InboundMessage] = []
        self.in_flight_now = 0

    def start(self, record_id: RecordId, message: InboundMessage) -> None:
        self.attempts.append((record_id.value, message.offset))
        if record_id.value in self.always_fail:
            raise HandOffUnavailable("resonate: connection refused")
        if self.failures_left > 0:
            self.failures_left -= 1
            raise HandOffUnavailable("resonate: connection refused")
        self.started.append((record_id.value, message.offset))
        self.messages.append(message)

    def in_flight(self) -> int:
        return self.in_flight_now


class FailingDeadLetterSink:
    """A dead-letter sink whose writes are never confirmed."""

    def __init__(self) -> None:
        self.attempts = 0

    def send(self, message: OutboundMessage) -> None:
        self.attempts += 1
        raise BrokerUnavailable("dead-letter write not confirmed")


@dataclass
class RecordingSource:
    """Wraps the in-memory source to observe pause/resume and what was polled."""

    inner: InMemoryRequestSource
    calls: list[str] = field(default_factory=list)
    polled: list[int] = field(default_factory=list)

    def poll(self, timeout: float) -> InboundMessage | None:
        message = self.inner.poll(timeout)
        if message is not None:
            self.polled.append(message.offset)
        return message

    def mark_done(self, message: InboundMessage) -> None:
        self.inner.mark_done(message)

    def commit(self) -> None:
        self.inner.commit()

    def pause(self) -> None:
        self.calls.append("pause")
        self.inner.pause()

    def resume(self) -> None:
        self.calls.append("resume")
        self.inner.resume()

    def close(self) -> None:
        self.inner.close()


class RecordingEvents:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def emit(self, event: str, **fields: object) -> None:
        self.events.append((event, fields))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


@pytest.fixture
def broker() -> InMemoryBroker:
    broker = InMemoryBroker()
    broker.create_topic(REQUESTS)
    broker.create_topic(DEAD_LETTERS)
    return broker


def request(broker: InMemoryBroker, value: bytes | None, headers: tuple[tuple[str, bytes], ...] = ()) -> int:
    return broker.produce(REQUESTS, value, headers=headers, partition=0)[1]


def until(condition: Callable[[], bool], timeout: float = 10.0) -> Callable[[], bool]:
    """A `should_stop` that ends the loop once `condition` holds, or at a deadline (tests then fail)."""
    deadline = time.monotonic() + timeout
    return lambda: condition() or time.monotonic() > deadline


def make_handoff(
    broker: InMemoryBroker,
    starter: FakeStarter,
    dead_letters: object | None = None,
    **kwargs: object,
) -> tuple[HandOff, InMemoryRequestSource, list[float]]:
    source = InMemoryRequestSource(broker, REQUESTS, GROUP)
    sleeps: list[float] = []
    handoff = HandOff(
        source,
        starter,
        dead_letters or builders.dead_letters(broker, DEAD_LETTERS),  # type: ignore[arg-type]
        budget=FAST_BUDGET,
        sleep=sleeps.append,
        poll_timeout=0.01,
        **kwargs,  # type: ignore[arg-type]
    )
    return handoff, source, sleeps


def committed(broker: InMemoryBroker) -> int:
    return broker.committed(GROUP, REQUESTS, 0)


def test_offsets_are_committed_after_every_workflow_was_started(broker: InMemoryBroker) -> None:
    for rid in ("a", "b", "c"):
        request(broker, encode_request(RecordId(rid)))
    starter = FakeStarter()
    handoff, _, sleeps = make_handoff(broker, starter)

    handoff.run(until(lambda: len(starter.started) == 3))

    assert starter.started == [("a", 0), ("b", 1), ("c", 2)]
    assert committed(broker) == 3
    assert broker.lag(GROUP, REQUESTS) == 0
    assert sleeps == []


def test_nothing_is_committed_before_the_loop_commits(broker: InMemoryBroker) -> None:
    """Marking is not committing: a crash before `commit` redelivers, never skips."""
    request(broker, encode_request(RecordId("a")))
    starter = FakeStarter()
    handoff, _, _ = make_handoff(broker, starter)

    handoff.step()

    assert starter.started == [("a", 0)]
    assert committed(broker) == 0


def test_the_whole_message_is_handed_off_so_its_answer_can_name_it(broker: InMemoryBroker) -> None:
    """The starter gets the message itself: its coordinates key the request's one answer, and its
    headers (trace, correlation ids) travel with it to that answer."""
    request(broker, encode_request(RecordId("x")))
    headers = (("traceparent", b"00-abc-01"), ("correlation-id", b"c-7"))
    offset = request(broker, encode_request(RecordId("alice@example.com")), headers)
    starter = FakeStarter()
    handoff, _, _ = make_handoff(broker, starter)

    handoff.run(until(lambda: len(starter.started) == 2))

    handed = starter.messages[1]
    assert (handed.topic, handed.partition, handed.offset) == (REQUESTS, 0, offset)
    assert handed.headers == headers
    assert handed.ref.key("ns") != starter.messages[0].ref.key("ns")


def test_two_messages_for_one_record_are_both_handed_off(broker: InMemoryBroker) -> None:
    """The hand-off does not collapse requests by record id: each message is owed its own answer."""
    request(broker, encode_request(RecordId("same")))
    request(broker, b'["same", "again"]')
    starter = FakeStarter()
    handoff, _, _ = make_handoff(broker, starter)

    handoff.run(until(lambda: len(starter.started) == 2))

    assert starter.started == [("same", 0), ("same", 1)]
    assert committed(broker) == 2


def test_the_reference_array_format_is_handed_off(broker: InMemoryBroker) -> None:
    request(broker, b'["abc", 1]')
    starter = FakeStarter()
    handoff, _, _ = make_handoff(broker, starter)

    handoff.run(until(lambda: len(starter.started) == 1))

    assert starter.started == [("abc", 0)]
    assert committed(broker) == 1


def test_a_starter_that_recovers_is_retried_with_backoff(broker: InMemoryBroker) -> None:
    request(broker, encode_request(RecordId("a")))
    starter = FakeStarter(failures=2)
    events = RecordingEvents()
    handoff, _, sleeps = make_handoff(broker, starter, events=events)

    handoff.run(until(lambda: len(starter.started) == 1))

    assert starter.attempts == [("a", 0)] * 3
    assert starter.started == [("a", 0)]
    assert sleeps == [0.01, 0.02]
    assert events.names().count("retrying") == 2
    assert committed(broker) == 1


def test_a_starter_that_stays_down_gives_up_without_committing_that_message(broker: InMemoryBroker) -> None:
    request(broker, encode_request(RecordId("ok")))
    request(broker, encode_request(RecordId("stuck")))
    request(broker, encode_request(RecordId("after")))
    starter = FakeStarter(always_fail=frozenset({"stuck"}))
    handoff, _, sleeps = make_handoff(broker, starter)

    with pytest.raises(HandOffGaveUp, match="workflow hand-off failed") as caught:
        handoff.run(until(lambda: False))

    assert isinstance(caught.value.__cause__, HandOffUnavailable)
    assert "redelivered" in str(caught.value)
    assert starter.started == [("ok", 0)]
    assert starter.attempts.count(("stuck", 1)) == len(FAST_BUDGET.delays()) + 1
    assert ("after", 2) not in starter.attempts
    assert sleeps == FAST_BUDGET.delays()
    assert committed(broker) == 1, "only the message before the stuck one is committed"


def test_a_poison_message_is_dead_lettered_and_the_loop_keeps_going(broker: InMemoryBroker) -> None:
    request(broker, encode_request(RecordId("before")))
    poison_offset = request(broker, b"\xffnot json")
    request(broker, encode_request(RecordId("after")))
    starter = FakeStarter()
    events = RecordingEvents()
    handoff, _, _ = make_handoff(broker, starter, events=events)

    handoff.run(until(lambda: len(starter.started) == 2))

    assert starter.started == [("before", 0), ("after", 2)]
    [(_, dead)] = broker.messages(DEAD_LETTERS)
    assert dead.value == b"\xffnot json"
    headers = dict(dead.headers)
    assert b"not UTF-8" in headers["dlq-error"]
    assert headers["dlq-topic"] == REQUESTS.encode()
    assert headers["dlq-partition"] == b"0"
    assert headers["dlq-offset"] == str(poison_offset).encode()
    assert committed(broker) == 3
    assert "dead_lettered" in events.names()


def test_a_tombstone_is_dead_lettered_too(broker: InMemoryBroker) -> None:
    request(broker, None)
    starter = FakeStarter()
    handoff, _, _ = make_handoff(broker, starter)

    handoff.run(until(lambda: len(broker.messages(DEAD_LETTERS)) == 1))

    [(_, dead)] = broker.messages(DEAD_LETTERS)
    assert dict(dead.headers)["dlq-value-null"] == b"true"
    assert starter.attempts == []
    assert committed(broker) == 1


def test_an_unwritable_dead_letter_topic_gives_up_without_committing(broker: InMemoryBroker) -> None:
    request(broker, encode_request(RecordId("good")))
    request(broker, b"[]")
    request(broker, encode_request(RecordId("later")))
    starter = FakeStarter()
    sink = FailingDeadLetterSink()
    handoff, _, _ = make_handoff(broker, starter, sink)

    with pytest.raises(HandOffGaveUp, match="dead-letter write failed"):
        handoff.run(until(lambda: False))

    assert sink.attempts == len(FAST_BUDGET.delays()) + 1
    assert starter.started == [("good", 0)]
    assert committed(broker) == 1, "the poison message is not committed until it is dead-lettered"


def test_backpressure_pauses_at_the_bound_and_resumes_below_half_of_it(broker: InMemoryBroker) -> None:
    for rid in ("a", "b", "c", "d"):
        request(broker, encode_request(RecordId(rid)))
    starter = FakeStarter()
    events = RecordingEvents()
    source = RecordingSource(InMemoryRequestSource(broker, REQUESTS, GROUP))
    handoff = HandOff(
        source,
        starter,
        builders.dead_letters(broker, DEAD_LETTERS),
        max_in_flight=4,
        budget=FAST_BUDGET,
        events=events,
        sleep=lambda _: None,
        poll_timeout=0.01,
    )

    starter.in_flight_now = 3
    handoff.step()
    assert starter.started == [("a", 0)]
    assert source.calls == []

    starter.in_flight_now = 4
    for _ in range(3):
        handoff.step()
    assert starter.started == [("a", 0)], "nothing new is handed off while at the bound"
    assert source.polled == [0]
    assert source.calls == ["pause"], "paused once, not once per poll"

    starter.in_flight_now = 2
    handoff.step()
    assert source.calls == ["pause"], "still paused at half the bound"
    assert starter.started == [("a", 0)]

    starter.in_flight_now = 1
    handoff.step()
    assert source.calls == ["pause", "resume"]
    assert starter.started == [("a", 0), ("b", 1)]

    starter.in_flight_now = 0
    handoff.run(until(lambda: len(starter.started) == 4))
    assert [rid for rid, _ in starter.started] == ["a", "b", "c", "d"]
    assert source.calls == ["pause", "resume"]
    assert committed(broker) == 4
    assert events.names().count("paused") == 1
    assert events.names().count("resumed") == 1


def test_no_backpressure_when_unbounded(broker: InMemoryBroker) -> None:
    for rid in ("a", "b"):
        request(broker, encode_request(RecordId(rid)))
    starter = FakeStarter()
    starter.in_flight_now = 10_000
    source = RecordingSource(InMemoryRequestSource(broker, REQUESTS, GROUP))
    handoff = HandOff(
        source,
        starter,
        builders.dead_letters(broker, DEAD_LETTERS),
        budget=builders.budget(),
        poll_timeout=0.01,
    )

    handoff.run(until(lambda: len(starter.started) == 2))

    assert source.calls == []
    assert committed(broker) == 2


def test_redelivery_after_give_up_resumes_from_the_uncommitted_message(broker: InMemoryBroker) -> None:
    """A restarted worker (same group) gets the message the crashed one could not hand off."""
    request(broker, encode_request(RecordId("ok")))
    request(broker, encode_request(RecordId("stuck")))
    down = FakeStarter(always_fail=frozenset({"stuck"}))
    first, _, _ = make_handoff(broker, down)
    with pytest.raises(HandOffGaveUp):
        first.run(until(lambda: False))

    recovered = FakeStarter()
    second, _, _ = make_handoff(broker, recovered)
    second.run(until(lambda: len(recovered.started) == 1))

    assert recovered.started == [("stuck", 1)]
    assert committed(broker) == 2


def test_retry_budget_delays_are_bounded() -> None:
    assert RetryBudget(deadline_seconds=0.05, first_delay=0.01).delays() == [0.01, 0.02]
    delays = RetryBudget(deadline_seconds=60, first_delay=0.2, max_delay=5).delays()
    assert sum(delays) <= 60
    assert max(delays) == 5
    assert delays[:3] == [0.2, 0.4, 0.8]


def test_a_paused_hand_off_resumes_as_soon_as_a_workflow_ends_not_after_a_poll_timeout(
    broker: InMemoryBroker,
) -> None:
    """At the bound the loop waits for room, not for a poll of its paused consumer to time out:
    that idle time, once per pause, capped a worker at about max_in_flight / poll_timeout."""
    for rid in ("a", "b"):
        request(broker, encode_request(RecordId(rid)))
    starter = FakeStarter()
    source = RecordingSource(InMemoryRequestSource(broker, REQUESTS, GROUP))
    handoff = HandOff(
        source,
        starter,
        builders.dead_letters(broker, DEAD_LETTERS),
        max_in_flight=1,
        budget=FAST_BUDGET,
        sleep=lambda _: None,
        poll_timeout=5.0,
    )
    handoff.step()
    assert starter.started == [("a", 0)]
    starter.in_flight_now = 1
    freed = threading.Timer(0.05, lambda: setattr(starter, "in_flight_now", 0))
    freed.start()
    began = time.monotonic()
    handoff.step()  # pauses, then waits for the slot
    waited = time.monotonic() - began
    assert source.calls == ["pause"]
    handoff.step()  # resumes and hands "b" off
    assert waited < 2.0, f"waited {waited:.2f}s for room; the poll timeout is 5s"
    assert starter.started == [("a", 0), ("b", 1)]
    assert source.calls == ["pause", "resume"]
