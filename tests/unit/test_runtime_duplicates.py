"""The runtime tells a redelivered message from a new request (the duplicates metric).

A redelivery of the same message (same topic, partition, offset and broker timestamp) attaches to
the workflow that already answers it: no second workflow, no second answer, one `duplicate`
event. A different message for the same record is no duplicate: it is a request of its own,
owed an answer of its own.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.adapters.resonate_runtime import ResonateRuntime
from record_deleter.domain.model import AttemptTotals, BatchResult, InboundMessage, RecordId, RequestRef
from record_deleter.domain.ports import RecordStore
from tests import builders
from tests.conftest import wait_for

pytestmark = pytest.mark.unit

REQUESTS, COMPLETIONS, FAILURES = "requests", "done", "failed"
WAIT = 30.0


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: object) -> None:
        with self._lock:
            self.events.append((event, fields))

    def duplicates(self) -> list[dict[str, object]]:
        with self._lock:
            return [f for e, f in self.events if e == "duplicate"]


class GatedStore(RecordStore):
    """The in-memory store, whose first batch of each gated record waits until released."""

    def __init__(self, inner: InMemoryRecordStore, gated: frozenset[str] = frozenset()) -> None:
        self.inner = inner
        self.gated = gated
        self.release = threading.Event()
        self.batches: dict[str, int] = {}
        self._lock = threading.Lock()

    def join_attempt(self, record_id: RecordId, request: RequestRef, request_key: str) -> int:
        return self.inner.join_attempt(record_id, request, request_key)

    def delete_batch(self, record_id: RecordId, batch_size: int, attempt: int) -> BatchResult:
        with self._lock:
            self.batches[record_id.value] = self.batches.get(record_id.value, 0) + 1
        if record_id.value in self.gated:
            assert self.release.wait(WAIT), "the test never released the gated batch"
        return self.inner.delete_batch(record_id, batch_size, attempt)

    def fail_attempt(self, record_id: RecordId, attempt: int, reason: str) -> AttemptTotals:
        return self.inner.fail_attempt(record_id, attempt, reason)

    def executed(self, record_id: str) -> int:
        with self._lock:
            return self.batches.get(record_id, 0)


@dataclass
class Subject:
    broker: InMemoryBroker
    rows: InMemoryRecordStore
    store: GatedStore
    events: Recorder
    runtime: ResonateRuntime

    def answers(self) -> list[tuple[str, int, bytes]]:
        """(record id, request offset, attempt) of every answer, completions and failures."""
        out = []
        for topic in (COMPLETIONS, FAILURES):
            for _, m in self.broker.messages(topic):
                headers = dict(m.headers)
                out.append((m.key.decode(), int(headers["request-offset"]), headers["attempt"]))  # type: ignore[union-attr]
        return sorted(out)

    def answered(self, message: InboundMessage) -> dict[str, object]:
        return self.runtime.wait(self.runtime.request_key(message), WAIT)


def message(record_id: str, offset: int, *, timestamp: int | None = None) -> InboundMessage:
    ts = 1_000 + offset if timestamp is None else timestamp
    return InboundMessage(REQUESTS, 0, offset, json.dumps(record_id).encode(), record_id.encode(), (), ts)


@pytest.fixture
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    gated = frozenset(getattr(request, "param", ()))
    broker = InMemoryBroker()
    broker.create_topic(COMPLETIONS)
    broker.create_topic(FAILURES)
    rows = InMemoryRecordStore()
    store = GatedStore(rows, gated)
    events = Recorder()
    runtime = builders.runtime(
        builders.resonate("local"),
        store,
        builders.publisher(broker, COMPLETIONS, FAILURES),
        params=builders.workflow_params(batch_size=10, pause_seconds=0, step_seconds=0),
        retry=builders.step_retry(delay=0.01, max_delay=0.05),
        events=events,
    )
    try:
        yield Subject(broker, rows, store, events, runtime)
    finally:
        store.release.set()
        runtime.stop()


@pytest.mark.parametrize("subject", [["a"]], indirect=True)
def test_a_message_redelivered_in_flight_attaches_to_its_workflow(subject: Subject) -> None:
    subject.rows.add_record(RecordId("a"), 30)
    first = message("a", 1)
    subject.runtime.start(RecordId("a"), first)
    wait_for(lambda: subject.store.executed("a") == 1, timeout=WAIT, message="the deletion is under way")
    assert subject.events.duplicates() == [], "a new message is not a duplicate"

    subject.runtime.start(RecordId("a"), message("a", 1))  # the same message again, still in flight

    assert subject.events.duplicates() == [{"record_id": "a", "partition": 0, "offset": 1}]
    assert subject.runtime.in_flight() == 1, "no second workflow"
    subject.store.release.set()
    assert subject.answered(first)["deleted"] is True
    assert subject.answers() == [("a", 1, b"1")], "one answer for the one message"
    assert subject.store.executed("a") == 3, "the rows were deleted once: 3 batches of 10"
    assert len(subject.rows.attempts(RecordId("a"))) == 1


def test_a_message_redelivered_after_its_answer_makes_no_second_answer(subject: Subject) -> None:
    subject.rows.add_record(RecordId("b"), 30)
    first = message("b", 2)
    subject.runtime.start(RecordId("b"), first)
    subject.answered(first)
    # rows re-created under the id since: a redelivery of the old request must not touch them
    subject.rows.add_record(RecordId("b"), 5)

    subject.runtime.start(RecordId("b"), message("b", 2))
    subject.answered(message("b", 2))

    assert subject.events.duplicates() == [{"record_id": "b", "partition": 0, "offset": 2}]
    assert subject.answers() == [("b", 2, b"1")]
    assert subject.rows.count_rows(RecordId("b")) == 5
    assert [a.requests for a in subject.rows.attempts(RecordId("b"))] == [1]


@pytest.mark.parametrize("subject", [["c"]], indirect=True)
def test_two_messages_for_one_record_while_it_runs_are_no_duplicates(subject: Subject) -> None:
    """One attempt deletes the rows; each message gets its own answer."""
    subject.rows.add_record(RecordId("c"), 30)
    first, second = message("c", 3), message("c", 4)
    subject.runtime.start(RecordId("c"), first)
    wait_for(lambda: subject.store.executed("c") == 1, timeout=WAIT, message="the deletion is under way")
    subject.runtime.start(RecordId("c"), second)
    wait_for(
        lambda: [a.requests for a in subject.rows.attempts(RecordId("c"))] == [2],
        timeout=WAIT,
        message="the second request joined the running attempt",
    )
    subject.store.release.set()

    assert subject.answered(first)["attempt"] == subject.answered(second)["attempt"] == 1
    assert subject.events.duplicates() == []
    assert subject.answers() == [("c", 3, b"1"), ("c", 4, b"1")]
    assert subject.store.executed("c") == 3, "one deletion, not two"


def test_a_recreated_topics_offset_is_a_new_request(subject: Subject) -> None:
    """Same topic, partition and offset with a new broker timestamp: the topic was re-created and
    this is another message, so it is answered (by a new attempt), not dropped as a duplicate."""
    subject.rows.add_record(RecordId("d"), 10)
    old, new = message("d", 0, timestamp=1_000), message("d", 0, timestamp=9_000)
    subject.runtime.start(RecordId("d"), old)
    subject.answered(old)
    subject.rows.add_record(RecordId("d"), 10)

    subject.runtime.start(RecordId("d"), new)
    assert subject.answered(new)["attempt"] == 2

    assert subject.events.duplicates() == []
    assert subject.answers() == [("d", 0, b"1"), ("d", 0, b"2")]
    assert subject.rows.count_rows(RecordId("d")) == 0


@pytest.mark.parametrize("subject", [("slow",)], indirect=True)
def test_the_oldest_workflow_in_flight_is_timed_until_it_ends(subject: Subject) -> None:
    """The age behind the `record_deleter_oldest_in_flight_seconds` gauge and its alert."""
    assert subject.runtime.oldest_in_flight_seconds() == 0.0
    subject.rows.add_record(RecordId("slow"), 5)
    m = message("slow", 1)
    subject.runtime.start(RecordId("slow"), m)
    wait_for(lambda: subject.store.executed("slow") == 1, timeout=WAIT, message="the gated batch began")
    first = subject.runtime.oldest_in_flight_seconds()
    wait_for(
        lambda: subject.runtime.oldest_in_flight_seconds() > first, timeout=WAIT, message="the age grows"
    )
    subject.store.release.set()
    assert subject.answered(m)["deleted"] is True
    wait_for(lambda: subject.runtime.in_flight() == 0, timeout=WAIT, message="the workflow left")
    assert subject.runtime.oldest_in_flight_seconds() == 0.0


@pytest.mark.parametrize("subject", [("held",)], indirect=True)
def test_waiting_for_room_wakes_when_a_workflow_ends(subject: Subject) -> None:
    subject.rows.add_record(RecordId("held"), 5)
    subject.runtime.start(RecordId("held"), message("held", 1))
    wait_for(lambda: subject.store.executed("held") == 1, timeout=WAIT, message="the gated batch began")
    assert subject.runtime.wait_for_room(1, 0.05) is False, "one in flight: no room below 1"
    threading.Timer(0.05, subject.store.release.set).start()
    began = time.monotonic()
    assert subject.runtime.wait_for_room(1, WAIT) is True
    assert time.monotonic() - began < WAIT / 2
