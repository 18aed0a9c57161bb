"""One contract for each broker family (in-memory and Kafka): the dead-letter sink over its
TopicWriter, and the request source.

The in-memory broker serves the demo and the unit tests; these tests keep it honest against a
real Kafka broker: same bytes and headers on the dead-letter topic, same truncation of a message
too big for the broker, same redelivery of what was not marked done.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import pytest

from record_deleter.adapters.memory_broker import InMemoryBroker, InMemoryRequestSource, InMemoryTopicWriter
from record_deleter.domain.messages import MAX_REQUEST_BYTES, OutboundMessage, dead_letter
from record_deleter.domain.model import InboundMessage
from record_deleter.domain.ports import RequestSource, TopicWriter
from tests import builders
from tests.contract.test_publisher_contract import InMemoryTopicReader, KafkaTopicReader, TopicReader


class Broker(Protocol):
    """A broker family under test: topics, a writer, a reader, and request sources on a group."""

    writer: TopicWriter
    reader: TopicReader

    def create(self, *topics: str) -> None: ...

    def produce(
        self, topic: str, value: bytes, key: bytes, headers: tuple[tuple[str, bytes], ...]
    ) -> None: ...

    def source(self, topic: str, group: str) -> RequestSource: ...


@dataclass
class MemoryBroker:
    broker: InMemoryBroker

    def __post_init__(self) -> None:
        self.writer = InMemoryTopicWriter(self.broker)
        self.reader = InMemoryTopicReader(self.broker)

    def create(self, *topics: str) -> None:
        for t in topics:
            self.broker.create_topic(t, 1)

    def produce(self, topic: str, value: bytes, key: bytes, headers: tuple[tuple[str, bytes], ...]) -> None:
        self.broker.produce(topic, value, key, headers)

    def source(self, topic: str, group: str) -> RequestSource:
        return InMemoryRequestSource(self.broker, topic, group)


class KafkaBroker:
    def __init__(self) -> None:
        from record_deleter.adapters.kafka import KafkaClientConfig, KafkaTopicWriter
        from tests.harness import kafka_bootstrap

        self.bootstrap = kafka_bootstrap()
        self.client = KafkaClientConfig(self.bootstrap)
        self.writer = KafkaTopicWriter(self.client, delivery_timeout=30)
        self.reader = KafkaTopicReader(self.bootstrap)

    def create(self, *topics: str) -> None:
        from tests.harness import create_topics

        create_topics(self.bootstrap, dict.fromkeys(topics, 1))

    def produce(self, topic: str, value: bytes, key: bytes, headers: tuple[tuple[str, bytes], ...]) -> None:
        self.writer.write(topic, OutboundMessage(key, value, headers))

    def source(self, topic: str, group: str) -> RequestSource:
        return builders.kafka_source(self.client, topic, group)

    def close(self) -> None:
        self.writer.close()


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.unit),
        pytest.param("kafka", marks=pytest.mark.integration),
    ]
)
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    if request.param == "memory":
        yield MemoryBroker(InMemoryBroker())
        return
    kafka = KafkaBroker()
    try:
        yield kafka
    finally:
        kafka.close()


def _names(*what: str) -> list[str]:
    suffix = uuid.uuid4().hex[:10]
    return [f"{w}-{suffix}" for w in what]


def _poll_n(source: RequestSource, n: int, timeout: float = 30.0) -> list[InboundMessage]:
    out: list[InboundMessage] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        message = source.poll(0.2)
        if message is not None:
            out.append(message)
    return out


POISON = InboundMessage("requests", 2, 41, b'{"oops', b"k-1", (("trace-id", b"t-9"),))


def test_a_dead_letter_carries_the_original_bytes_and_where_they_came_from(broker: Broker) -> None:
    [dlq] = _names("dlq")
    broker.create(dlq)

    builders.dead_letters(broker.writer, dlq).send(dead_letter(POISON, "not JSON"))

    [read] = broker.reader.read(dlq, expect=1)
    assert read.value == b'{"oops'
    assert read.key == b"k-1"
    assert read.headers["trace-id"] == b"t-9"
    assert read.headers["dlq-error"] == b"not JSON"
    assert read.headers["dlq-topic"] == b"requests"
    assert (read.headers["dlq-partition"], read.headers["dlq-offset"]) == (b"2", b"41")


def test_a_dead_letter_too_big_for_the_broker_is_truncated_not_dropped(broker: Broker) -> None:
    [dlq] = _names("dlq")
    broker.create(dlq)
    huge = InboundMessage("requests", 0, 7, b"x" * 2_000_000)

    builders.dead_letters(broker.writer, dlq).send(dead_letter(huge, "too big"))

    [read] = broker.reader.read(dlq, expect=1)
    assert read.value == b"x" * MAX_REQUEST_BYTES
    assert read.headers["dlq-truncated-from"] == b"2000000"
    assert read.headers["dlq-offset"] == b"7"


def test_the_source_delivers_value_key_headers_and_coordinates(broker: Broker) -> None:
    topic, group = _names("requests", "group")
    broker.create(topic)
    broker.produce(topic, b'"r-1"', b"r-1", (("correlation-id", b"c-1"),))

    source = broker.source(topic, group)
    try:
        [message] = _poll_n(source, 1)
    finally:
        source.close()
    assert (message.topic, message.partition, message.offset) == (topic, 0, 0)
    assert (message.value, message.key) == (b'"r-1"', b"r-1")
    assert dict(message.headers)["correlation-id"] == b"c-1"


def test_only_what_was_marked_done_is_committed(broker: Broker) -> None:
    """A new member of the group gets again every message that was not marked done."""
    topic, group = _names("requests", "group")
    broker.create(topic)
    for i in range(4):
        broker.produce(topic, f'"r-{i}"'.encode(), f"r-{i}".encode(), ())

    first = broker.source(topic, group)
    try:
        got = _poll_n(first, 4)
        assert [m.offset for m in got] == [0, 1, 2, 3]
        first.mark_done(got[0])
        first.mark_done(got[1])
        first.commit()
    finally:
        first.close()

    second = broker.source(topic, group)
    try:
        again = _poll_n(second, 2)
        assert [m.offset for m in again] == [2, 3]
        assert second.poll(1.0) is None
    finally:
        second.close()
