"""An in-process broker with the consumer/producer surface of the Kafka adapter.

Topics have partitions (records keyed by hash of key, like Kafka), consumer groups keep
committed offsets, and a consumer only advances what was marked done. It serves unit tests and
the embedded demo; it is not durable across processes.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass

from ..domain.errors import BrokerUnavailable, MessageTooLarge
from ..domain.evidence import Delivery
from ..domain.messages import OutboundMessage
from ..domain.model import InboundMessage
from ..domain.ports import RequestSource, TopicWriter


@dataclass(frozen=True, slots=True)
class StoredMessage:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int  # milliseconds, stamped at produce time as a broker does


class InMemoryBroker:
    """Topics of partitions of messages, plus committed offsets per (group, topic, partition)."""

    def __init__(self, default_partitions: int = 1) -> None:
        self._topics: dict[str, list[list[StoredMessage]]] = {}
        self._committed: dict[tuple[str, str, int], int] = defaultdict(int)
        self._cond = threading.Condition()
        self._default_partitions = default_partitions
        self.available = True

    def create_topic(self, name: str, partitions: int | None = None) -> bool:
        with self._cond:
            if name in self._topics:
                return False
            self._topics[name] = [[] for _ in range(partitions or self._default_partitions)]
            return True

    def topics(self) -> dict[str, int]:
        with self._cond:
            return {name: len(parts) for name, parts in self._topics.items()}

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
        partition: int | None = None,
    ) -> tuple[int, int]:
        with self._cond:
            if not self.available:
                raise BrokerUnavailable("in-memory broker is marked unavailable")
            if topic not in self._topics:
                raise BrokerUnavailable(f"unknown topic {topic!r}; create it first (setup-topics)")
            parts = self._topics[topic]
            if partition is None:
                partition = zlib.crc32(key) % len(parts) if key else sum(map(len, parts)) % len(parts)
            log = parts[partition]
            log.append(StoredMessage(len(log), key, value, headers, time.time_ns() // 1_000_000))
            self._cond.notify_all()
            return partition, len(log) - 1

    def messages(self, topic: str) -> list[tuple[int, StoredMessage]]:
        """Every message of a topic, as (partition, message), for verification."""
        with self._cond:
            return [(p, m) for p, log in enumerate(self._topics.get(topic, [])) for m in log]

    def read(self, topic: str, partition: int, offset: int) -> StoredMessage | None:
        with self._cond:
            log = self._topics[topic][partition]
            return log[offset] if offset < len(log) else None

    def wait(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait(timeout)

    def partitions(self, topic: str) -> int:
        with self._cond:
            return len(self._topics[topic])

    def committed(self, group: str, topic: str, partition: int) -> int:
        with self._cond:
            return self._committed[(group, topic, partition)]

    def commit(self, group: str, topic: str, partition: int, offset: int) -> None:
        with self._cond:
            self._committed[(group, topic, partition)] = offset

    def lag(self, group: str, topic: str) -> int:
        with self._cond:
            return sum(
                len(log) - self._committed[(group, topic, p)]
                for p, log in enumerate(self._topics.get(topic, []))
            )


class InMemoryRequestSource(RequestSource):
    """A single group member owning every partition of the topic."""

    def __init__(self, broker: InMemoryBroker, topic: str, group: str) -> None:
        self._broker = broker
        self._topic = topic
        self._group = group
        self._position: dict[int, int] = {}
        self._done: dict[int, int] = {}
        self._paused = False
        self._next_partition = 0

    def poll(self, timeout: float) -> InboundMessage | None:
        if self._paused:
            self._broker.wait(timeout)
            return None
        for attempt in range(2):
            n = self._broker.partitions(self._topic)
            for i in range(n):
                p = (self._next_partition + i) % n
                pos = self._position.setdefault(p, self._broker.committed(self._group, self._topic, p))
                stored = self._broker.read(self._topic, p, pos)
                if stored is not None:
                    self._position[p] = pos + 1
                    self._next_partition = p + 1
                    return InboundMessage(
                        self._topic,
                        p,
                        stored.offset,
                        stored.value,
                        stored.key,
                        stored.headers,
                        stored.timestamp,
                    )
            if attempt == 0:
                self._broker.wait(timeout)
        return None

    def mark_done(self, message: InboundMessage) -> None:
        self._done[message.partition] = message.offset + 1

    def held_partitions(self) -> frozenset[int]:
        return frozenset(range(self._broker.partitions(self._topic)))

    def lag(self) -> int | None:
        return None  # not tracked by the in-process broker

    def commit(self) -> None:
        for p, offset in self._done.items():
            self._broker.commit(self._group, self._topic, p, offset)

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def close(self) -> None:
        self.commit()


# Kafka's default message.max.bytes: a bigger message is refused, as a real broker would.
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588


class InMemoryTopicWriter(TopicWriter):
    """Same contract as KafkaTopicWriter: confirmed at once, refused when too big or unavailable."""

    def __init__(
        self, broker: InMemoryBroker, *, max_message_bytes: int = KAFKA_DEFAULT_MAX_MESSAGE_BYTES
    ) -> None:
        self._broker = broker
        self._max = max_message_bytes

    def write(self, topic: str, message: OutboundMessage) -> Delivery:
        if len(message.value) > self._max:
            raise MessageTooLarge(f"{topic}: message of {len(message.value)} bytes is too large")
        partition, offset = self._broker.produce(topic, message.value, message.key, message.headers)
        return Delivery(topic, partition, offset)


class InMemoryTopicAdmin:
    """Same surface as KafkaTopicAdmin."""

    def __init__(self, broker: InMemoryBroker) -> None:
        self._broker = broker

    def create(self, topics: dict[str, int], replication_factor: int = 1) -> dict[str, str]:
        return {
            name: "created" if self._broker.create_topic(name, n) else "exists" for name, n in topics.items()
        }

    def partitions(self, topic: str) -> int:
        return self._broker.topics().get(topic, 0)

    def set_group_session_timeout(self, group: str, seconds: float) -> str | None:
        return None  # no sessions: an in-process group never loses a member to a crash


class InMemoryRequestProducer:
    """Same surface as KafkaRequestProducer."""

    def __init__(self, broker: InMemoryBroker) -> None:
        self._broker = broker

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        self._broker.produce(topic, value, key, headers)

    def flush(self, timeout: float = 30.0) -> None:
        return None
