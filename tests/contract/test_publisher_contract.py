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
from record_deleter.domain.model import Completion, DeletionFailed, RecordId
from record_deleter.domain.ports import CompletionPublisher
from tests import builders


@dataclass(frozen=True)
class ReadMessage:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


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
        return [ReadMessage(m.key, m.value, dict(m.headers)) for _, m in self._broker.messages(topic)]


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
        from tests.support import read_topic

        return [
            ReadMessage(m.key, m.value, m.headers)
            for m in read_topic(self._bootstrap, topic, expect=expect, timeout=timeout)
        ]


@contextmanager
def kafka_publisher(
    completion_topic: str, failure_topic: str
) -> Iterator[tuple[CompletionPublisher, TopicReader]]:
    from record_deleter.adapters.kafka import KafkaClientConfig, KafkaTopicWriter
    from tests.support import create_topics, kafka_bootstrap

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


def test_publish_puts_one_completion_in_the_reference_format(subject: PublisherUnderTest) -> None:
    subject.publisher.publish(
        Completion(RecordId("abc-1"), 42, rows_deleted=1234, batches=2, idempotency_key="abc-1")
    )

    [message] = subject.reader.read(subject.completion_topic, expect=1)
    assert message.value == b'["abc-1", 42]'
    assert message.key == b"abc-1"
    assert message.headers == {"rows-deleted": b"1234", "batches": b"2", "idempotency-key": b"abc-1"}
    assert subject.reader.read(subject.failure_topic, expect=0, timeout=0) == []


def test_publish_failure_puts_one_failure_on_its_own_topic(subject: PublisherUnderTest) -> None:
    failure = DeletionFailed(
        RecordId("abc-2"),
        7,
        "DeletionPlanInvalid: no table x",
        rows_deleted=10,
        batches=1,
        idempotency_key="abc-2",
    )
    subject.publisher.publish_failure(failure)

    [message] = subject.reader.read(subject.failure_topic, expect=1)
    body = json.loads(message.value or b"null")
    assert body["record_id"] == "abc-2"
    assert body["error"] == "DeletionPlanInvalid: no table x"
    assert body["offset"] == 7
    assert body["rows_deleted"] == 10
    assert body["batches"] == 1
    assert message.key == b"abc-2"
    assert message.headers["idempotency-key"] == b"abc-2"
    assert subject.reader.read(subject.completion_topic, expect=0, timeout=0) == []


def test_each_publish_is_one_message(subject: PublisherUnderTest) -> None:
    for offset, rid in enumerate(("r-a", "r-b", "r-c")):
        subject.publisher.publish(Completion(RecordId(rid), offset, 1, 1, rid))

    messages = subject.reader.read(subject.completion_topic, expect=3)
    assert sorted(json.loads(m.value or b"null") for m in messages) == [["r-a", 0], ["r-b", 1], ["r-c", 2]]
