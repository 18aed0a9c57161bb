"""One contract for every CompletionPublisher: what lands on the topics, byte for byte.

Each implementation is a factory in FACTORIES: given two fresh topic names it yields the
publisher and a TopicReader for reading those topics back. Add the Kafka implementation by
adding a factory (and its param, marked `integration`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

import pytest

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.domain.model import Answer, AttemptTotals, RecordId, RequestRef
from record_deleter.domain.ports import CompletionPublisher
from tests import builders


@dataclass(frozen=True)
class ReadMessage:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int = 0
    offset: int = 0


class TopicReader(Protocol):
    """Reads back what was published: every message on `topic` once at least `expect` arrived.

    Implementations over a real broker wait up to `timeout` seconds for `expect` messages and
    then return everything they saw (so an unexpected extra message fails the test).
    """

    def read(self, topic: str, expect: int, timeout: float = 30.0) -> list[ReadMessage]: ...


@dataclass
class PublisherUnderTest:
    publisher: CompletionPublisher
    reader: TopicReader
    completion_topic: str
    failure_topic: str


PublisherFactory = Callable[[str, str], AbstractContextManager[tuple[CompletionPublisher, TopicReader]]]


class InMemoryTopicReader:
    def __init__(self, broker: InMemoryBroker) -> None:
        self._broker = broker

    def read(self, topic: str, expect: int, timeout: float = 30.0) -> list[ReadMessage]:
        return [
            ReadMessage(m.key, m.value, dict(m.headers), p, m.offset) for p, m in self._broker.messages(topic)
        ]


@contextmanager
def memory_publisher(
    completion_topic: str, failure_topic: str
) -> Iterator[tuple[CompletionPublisher, TopicReader]]:
    broker = InMemoryBroker(default_partitions=3)
    broker.create_topic(completion_topic)
    broker.create_topic(failure_topic)
    yield builders.publisher(broker, completion_topic, failure_topic), InMemoryTopicReader(broker)


class KafkaTopicReader:
    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap

    def read(self, topic: str, expect: int, timeout: float = 30.0) -> list[ReadMessage]:
        from tests.harness import read_topic

        return [
            ReadMessage(m.key, m.value, m.headers, m.partition, m.offset)
            for m in read_topic(self._bootstrap, topic, expect=expect, timeout=timeout)
        ]


@contextmanager
def kafka_publisher(
    completion_topic: str, failure_topic: str
) -> Iterator[tuple[CompletionPublisher, TopicReader]]:
    from record_deleter.adapters.kafka import KafkaClientConfig, KafkaTopicWriter
    from tests.harness import create_topics, kafka_bootstrap

    bootstrap = kafka_bootstrap()
    create_topics(bootstrap, {completion_topic: 3, failure_topic: 1})
    producer = KafkaTopicWriter(KafkaClientConfig(bootstrap), delivery_timeout=30)
    try:
        yield builders.publisher(producer, completion_topic, failure_topic), KafkaTopicReader(bootstrap)
    finally:
        producer.close()


FACTORIES: dict[str, PublisherFactory] = {"memory": memory_publisher, "kafka": kafka_publisher}


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.unit),
        pytest.param("kafka", marks=pytest.mark.integration),
    ]
)
def subject(request: pytest.FixtureRequest) -> Iterator[PublisherUnderTest]:
    suffix = uuid.uuid4().hex[:12]
    completion_topic, failure_topic = f"completions-{suffix}", f"failures-{suffix}"
    with FACTORIES[request.param](completion_topic, failure_topic) as (publisher, reader):
        yield PublisherUnderTest(publisher, reader, completion_topic, failure_topic)


REQUEST_TOPIC = "records_to_be_deleted"


def answer(
    record_id: str,
    offset: int,
    *,
    failure: str | None = None,
    partition: int = 1,
    attempt: int = 1,
    rows: int = 1234,
    batches: int = 2,
    headers: tuple[tuple[str, bytes], ...] = (),
) -> Answer:
    request = RequestRef(REQUEST_TOPIC, partition, offset, 1_700_000_000_000 + offset, headers)
    return Answer(
        RecordId(record_id),
        request,
        attempt,
        AttemptTotals(rows, batches),
        request.key("contract"),
        failure,
    )


def test_publish_puts_one_completion_in_the_reference_format(subject: PublisherUnderTest) -> None:
    subject.publisher.publish(answer("abc-1", 42))

    [message] = subject.reader.read(subject.completion_topic, expect=1)
    assert message.value == b'["abc-1", 42]'
    assert message.key == b"abc-1"
    assert message.headers == {
        "rows-deleted": b"1234",
        "batches": b"2",
        "attempt": b"1",
        "request-topic": REQUEST_TOPIC.encode(),
        "request-partition": b"1",
        "request-offset": b"42",
        "idempotency-key": f"rd:req:contract:{REQUEST_TOPIC}:1:42:1700000000042".encode(),
    }
    assert subject.reader.read(subject.failure_topic, expect=0, timeout=0) == []


def test_publish_returns_where_the_broker_put_each_answer(subject: PublisherUnderTest) -> None:
    """The coordinates the evidence records are the ones a consumer reads the answer at."""
    deliveries = {
        record: subject.publisher.publish(answer(record, n)) for n, record in enumerate(["a-1", "b-2", "c-3"])
    }

    read = subject.reader.read(subject.completion_topic, expect=3)
    assert {(m.key or b"").decode(): (subject.completion_topic, m.partition, m.offset) for m in read} == {
        record: (d.topic, d.partition, d.offset) for record, d in deliveries.items()
    }
    failed = subject.publisher.publish(answer("d-4", 9, failure="DeletionRejected: refused"))
    [message] = subject.reader.read(subject.failure_topic, expect=1)
    assert (failed.topic, failed.partition, failed.offset) == (
        subject.failure_topic,
        message.partition,
        message.offset,
    )


def test_a_failed_answer_goes_to_the_failure_topic_with_its_reason(subject: PublisherUnderTest) -> None:
    subject.publisher.publish(
        answer("abc-2", 7, failure="DeletionPlanInvalid: no table x", attempt=2, rows=10, batches=1)
    )

    [message] = subject.reader.read(subject.failure_topic, expect=1)
    assert json.loads(message.value or b"null") == {
        "record_id": "abc-2",
        "offset": 7,
        "error": "DeletionPlanInvalid: no table x",
        "rows_deleted": 10,
        "batches": 1,
        "attempt": 2,
    }
    assert message.key == b"abc-2"
    assert message.headers["idempotency-key"] == f"rd:req:contract:{REQUEST_TOPIC}:1:7:1700000000007".encode()
    assert message.headers["attempt"] == b"2"
    assert message.headers["rows-deleted"] == b"10"
    assert message.headers["batches"] == b"1"
    assert subject.reader.read(subject.completion_topic, expect=0, timeout=0) == []


@pytest.mark.parametrize("failure", [None, "DeletionRejected: constraint"], ids=["completion", "failure"])
def test_an_answer_carries_the_requests_headers_and_coordinates(
    subject: PublisherUnderTest, failure: str | None
) -> None:
    """A requester matches an answer to its request by its own trace/correlation headers, or by
    the request's topic, partition and offset."""
    carried = (("traceparent", b"00-4bf92f3577b34da6-00f067aa0ba902b7-01"), ("correlation-id", b"\x00\xffc"))
    subject.publisher.publish(answer("abc-3", 5, failure=failure, partition=2, headers=carried))

    topic = subject.completion_topic if failure is None else subject.failure_topic
    [message] = subject.reader.read(topic, expect=1)
    assert message.headers["traceparent"] == carried[0][1]
    assert message.headers["correlation-id"] == carried[1][1], "header bytes come back unchanged"
    assert message.headers["request-topic"] == REQUEST_TOPIC.encode()
    assert message.headers["request-partition"] == b"2"
    assert message.headers["request-offset"] == b"5"


def test_a_request_header_cannot_forge_the_answers_own(subject: PublisherUnderTest) -> None:
    forged = (("rows-deleted", b"999999"), ("idempotency-key", b"forged"), ("request-offset", b"0"))
    subject.publisher.publish(answer("abc-4", 9, rows=3, headers=forged))

    [message] = subject.reader.read(subject.completion_topic, expect=1)
    assert message.headers["rows-deleted"] == b"3"
    assert message.headers["request-offset"] == b"9"
    assert message.headers["idempotency-key"] != b"forged"


def test_each_publish_is_one_message(subject: PublisherUnderTest) -> None:
    for offset, rid in enumerate(("r-a", "r-b", "r-c")):
        subject.publisher.publish(answer(rid, offset))

    messages = subject.reader.read(subject.completion_topic, expect=3)
    assert sorted(json.loads(m.value or b"null") for m in messages) == [["r-a", 0], ["r-b", 1], ["r-c", 2]]


def test_two_requests_for_one_record_get_two_answers_a_consumer_can_tell_apart(
    subject: PublisherUnderTest,
) -> None:
    """One attempt, two requests: two answers, same counts, each naming its own request."""
    subject.publisher.publish(answer("same", 3))
    subject.publisher.publish(answer("same", 8))

    messages = subject.reader.read(subject.completion_topic, expect=2)
    assert sorted(m.headers["request-offset"] for m in messages) == [b"3", b"8"]
    assert len({m.headers["idempotency-key"] for m in messages}) == 2
    assert {m.headers["rows-deleted"] for m in messages} == {b"1234"}


def test_a_republished_answer_keeps_its_idempotency_key(subject: PublisherUnderTest) -> None:
    """A crash between the publish and its checkpoint publishes again: the copy is recognisable."""
    subject.publisher.publish(answer("again", 4))
    subject.publisher.publish(answer("again", 4))

    first, second = subject.reader.read(subject.completion_topic, expect=2)
    assert first.value == second.value
    assert first.headers == second.headers
