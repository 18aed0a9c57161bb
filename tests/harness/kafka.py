"""Kafka for tests and benchmarks: topics, producing requests, reading topics, group state."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from .endpoints import unique


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    timestamp: float = 0.0  # the message's timestamp (CreateTime: when its producer sent it), in s


def _read(msg: Any) -> Read:
    headers = dict(msg.headers() or [])
    return Read(
        msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(), headers, msg.timestamp()[1] / 1000
    )


@dataclass(frozen=True)
class Topics:
    """The four topics of one deployment, under the worker's BROKER_*_TOPIC settings."""

    request: str
    completion: str
    failure: str
    dead_letter: str

    @classmethod
    def fresh(cls, name: str) -> Topics:
        return cls(
            unique(f"{name}-req"), unique(f"{name}-done"), unique(f"{name}-failed"), unique(f"{name}-dlq")
        )

    def env(self) -> dict[str, str]:
        return {
            "BROKER_REQUEST_TOPIC": self.request,
            "BROKER_COMPLETION_TOPIC": self.completion,
            "BROKER_FAILURE_TOPIC": self.failure,
            "BROKER_DEAD_LETTER_TOPIC": self.dead_letter,
        }

    def create(self, bootstrap: str, partitions: int) -> Topics:
        create_topics(
            bootstrap,
            {self.request: partitions, self.completion: partitions, self.failure: 1, self.dead_letter: 1},
        )
        return self

    def delete(self, bootstrap: str) -> None:
        delete_topics(bootstrap, [self.request, self.completion, self.failure, self.dead_letter])


def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in topics.items()]
    )
    for f in futures.values():
        f.result(30)


def delete_topics(bootstrap: str, topics: Sequence[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    for f in admin.delete_topics(list(topics), operation_timeout=30).values():
        with contextlib.suppress(Exception):
            f.result(30)


def produce(
    bootstrap: str,
    topic: str,
    values: Sequence[bytes | None],
    *,
    keys: Sequence[bytes | None] | None = None,
    partition: int | None = None,
) -> list[tuple[int, int]]:
    """Produce `values` (with `keys`), flushed; returns (partition, offset) of each, in order."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
            "log_level": 0,
        }
    )
    placed: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def report(i: int):  # type: ignore[no-untyped-def]
        def on_delivery(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                errors.append(err.str())
            else:
                placed[i] = (msg.partition(), msg.offset())

        return on_delivery

    for i, value in enumerate(values):
        kwargs: dict[str, Any] = {"value": value, "on_delivery": report(i)}
        if partition is not None:
            kwargs["partition"] = partition
        if keys is not None and keys[i] is not None:
            kwargs["key"] = keys[i]
        producer.produce(topic, **kwargs)
        producer.poll(0)
    assert producer.flush(60) == 0, "requests not delivered"
    assert not errors, errors
    return [placed[i] for i in range(len(values))]


def read_topic(
    bootstrap: str, topic: str, *, expect: int, timeout: float = 30.0, settle: float = 1.0
) -> list[Read]:
    """Read a topic from the start until `expect` messages arrived, then `settle` s more for extras."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[Read] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if settle_until is not None and time.monotonic() > settle_until:
                break
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            out.append(_read(msg))
            if len(out) >= expect and settle_until is None:
                settle_until = time.monotonic() + settle
    finally:
        consumer.close()
    return out


class TopicReader:
    """Reads a topic from the beginning without a consumer group; accumulates what it saw."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": unique("reader"),
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "log_level": 0,  # the outage tests take the broker away: no connect-refused noise
            }
        )
        meta = self._consumer.list_topics(topic, timeout=15)
        parts = sorted(meta.topics[topic].partitions)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self.messages: list[Read] = []

    def poll(self, timeout: float = 0.3) -> list[Read]:
        for msg in self._consumer.consume(num_messages=5000, timeout=timeout):
            if not msg.error():
                self.messages.append(_read(msg))
        return self.messages

    def close(self) -> None:
        self._consumer.close()


@contextmanager
def topic_reader(bootstrap: str, topic: str) -> Iterator[TopicReader]:
    reader = TopicReader(bootstrap, topic)
    try:
        yield reader
    finally:
        reader.close()


def completion_ids(reader: TopicReader) -> set[str]:
    return {json.loads(m.value or b"null")[0] for m in reader.poll()}


def committed_lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages in `topic` not yet committed by `group` (0 = everything committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p) for p in meta.topics[topic].partitions]
        committed = consumer.committed(parts, timeout=10)
        lag = 0
        for tp in committed:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            lag += high - (tp.offset if tp.offset >= 0 else 0)
        return lag
    finally:
        consumer.close()


def group_assignment(bootstrap: str, group: str) -> list[list[int]]:
    """Partitions of each member of consumer group `group` ([] while it has none), from the broker."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        description = admin.describe_consumer_groups([group])[group].result(10)
    except Exception:
        return []
    return [sorted(tp.partition for tp in m.assignment.topic_partitions) for m in description.members]


def group_ready(bootstrap: str, group: str, members: int, partitions: int) -> bool:
    """`members` consumers in `group`, each with a share of the topic's `partitions`."""
    shares = group_assignment(bootstrap, group)
    return len(shares) == members and all(shares) and sum(map(len, shares)) == partitions
