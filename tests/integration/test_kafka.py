"""The Kafka adapters against a real Apache Kafka broker (KRaft, auto topic creation off)."""

from __future__ import annotations

import json
import logging
import re
import threading

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

from record_deleter.adapters.kafka import (
    KafkaClientConfig,
    KafkaRequestSource,
    KafkaTopicAdmin,
    KafkaTopicWriter,
)
from record_deleter.adapters.redpanda import redpanda_client_config
from record_deleter.domain.errors import BrokerRefused, HandOffUnavailable, PublishFailed
from record_deleter.domain.handoff import HandOff, HandOffGaveUp, RetryBudget
from record_deleter.domain.model import Answer, AttemptTotals, InboundMessage, RecordId, RequestRef
from record_deleter.domain.ports import WorkflowStarter
from record_deleter.entrypoints.cli import main
from tests import builders
from tests.conftest import wait_for
from tests.harness import committed_lag, create_topics, kafka_bootstrap, read_topic, unique

pytestmark = pytest.mark.integration


def answer(record_id: str, offset: int, rows: int, batches: int) -> Answer:
    ref = RequestRef("records_to_be_deleted", 0, offset, 1)
    return Answer(RecordId(record_id), ref, 1, AttemptTotals(rows, batches), ref.key("it"))


class RecordingStarter(WorkflowStarter):
    """A WorkflowStarter that records hand-offs and can refuse a given record id."""

    def __init__(self, refuse: str | None = None) -> None:
        self.started: list[tuple[str, int]] = []
        self.refuse = refuse
        self.lock = threading.Lock()

    def start(self, record_id: RecordId, message: InboundMessage) -> None:
        if record_id.value == self.refuse:
            raise HandOffUnavailable("resonate server down (simulated)")
        assert message.timestamp is not None, "the broker's timestamp makes a request distinct"
        with self.lock:
            self.started.append((record_id.value, message.offset))

    def in_flight(self) -> int:
        return 0


@pytest.fixture
def bootstrap() -> str:
    return kafka_bootstrap()


@pytest.fixture
def client(bootstrap: str) -> KafkaClientConfig:
    return KafkaClientConfig(bootstrap_servers=bootstrap)


def produce_raw(bootstrap: str, topic: str, values: list[bytes | None], partition: int | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for v in values:
        if partition is None:
            producer.produce(topic, value=v)
        else:
            producer.produce(topic, value=v, partition=partition)
    assert producer.flush(30) == 0


def test_setup_topics_creates_all_four_idempotently(bootstrap: str, monkeypatch, capsys) -> None:
    names = {
        "BROKER_REQUEST_TOPIC": unique("req"),
        "BROKER_COMPLETION_TOPIC": unique("done"),
        "BROKER_FAILURE_TOPIC": unique("failed"),
        "BROKER_DEAD_LETTER_TOPIC": unique("dlq"),
    }
    for k, v in names.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("BROKER_KIND", "kafka")
    monkeypatch.setenv("BROKER_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("BROKER_PARTITIONS", "4")
    assert main(["setup-topics"]) == 0
    first = capsys.readouterr().out
    assert first.count(": created") == 4
    assert main(["setup-topics"]) == 0
    assert capsys.readouterr().out.count(": exists") == 4
    admin = KafkaTopicAdmin(KafkaClientConfig(bootstrap))
    assert admin.partitions(names["BROKER_REQUEST_TOPIC"]) == 4
    assert admin.partitions(names["BROKER_DEAD_LETTER_TOPIC"]) == 1


def test_offsets_are_committed_only_after_hand_off(bootstrap: str, client: KafkaClientConfig) -> None:
    topic, dlq, group = unique("req"), unique("dlq"), unique("group")
    create_topics(bootstrap, {topic: 1, dlq: 1})
    produce_raw(bootstrap, topic, [json.dumps(f"r{i}").encode() for i in range(6)])

    starter = RecordingStarter(refuse="r3")
    producer = KafkaTopicWriter(client, delivery_timeout=30)
    source = builders.kafka_source(client, topic, group)
    handoff = HandOff(
        source,
        starter,
        builders.dead_letters(producer, dlq),
        budget=RetryBudget(deadline_seconds=0.3, first_delay=0.05),
    )
    with pytest.raises(HandOffGaveUp):
        handoff.run(lambda: False)
    source.close()
    assert [r for r, _ in starter.started] == ["r0", "r1", "r2"]
    # r3..r5 are not committed: 3 messages of lag remain for the group
    assert committed_lag(bootstrap, group, topic) == 3

    # a restarted worker in the same group gets r3 again and finishes the rest
    starter2 = RecordingStarter()
    source2 = builders.kafka_source(client, topic, group)
    handoff2 = HandOff(source2, starter2, builders.dead_letters(producer, dlq), budget=builders.budget())
    handoff2.run(lambda: len(starter2.started) >= 3)
    source2.close()
    producer.close()
    assert [r for r, _ in starter2.started] == ["r3", "r4", "r5"]
    assert [o for _, o in starter2.started] == [3, 4, 5]
    assert committed_lag(bootstrap, group, topic) == 0


def test_poison_goes_to_dead_letter_topic_with_headers(bootstrap: str, client: KafkaClientConfig) -> None:
    topic, dlq, group = unique("req"), unique("dlq"), unique("group")
    create_topics(bootstrap, {topic: 1, dlq: 1})
    bad = [b"not json", None, b"\xff\xfe", b"[]", b'"a\\u0000b"', b"", b'{"id": 1}']
    produce_raw(bootstrap, topic, [b'"good-1"', *bad, b'["good-2", 7]'])

    starter = RecordingStarter()
    producer = KafkaTopicWriter(client, delivery_timeout=30)
    source = builders.kafka_source(client, topic, group)
    HandOff(source, starter, builders.dead_letters(producer, dlq), budget=builders.budget()).run(
        lambda: len(starter.started) >= 2
    )
    source.close()
    producer.close()

    assert [r for r, _ in starter.started] == ["good-1", "good-2"]
    dead = read_topic(bootstrap, dlq, expect=len(bad))
    assert len(dead) == len(bad)
    assert [d.value for d in dead] == [v or b"" for v in bad]
    for d, original_offset in zip(dead, range(1, 1 + len(bad)), strict=True):
        assert d.headers["dlq-topic"] == topic.encode()
        assert d.headers["dlq-partition"] == b"0"
        assert d.headers["dlq-offset"] == str(original_offset).encode()
        assert d.headers["dlq-error"]
    assert dead[1].headers["dlq-value-null"] == b"true"
    assert b"tombstone" in dead[1].headers["dlq-error"]
    assert committed_lag(bootstrap, group, topic) == 0


def test_completion_is_confirmed_by_delivery_report(bootstrap: str, client: KafkaClientConfig) -> None:
    done, failed = unique("done"), unique("failed")
    create_topics(bootstrap, {done: 1, failed: 1})
    producer = KafkaTopicWriter(client, delivery_timeout=30)
    publisher = builders.publisher(producer, done, failed)
    publisher.publish(answer("abc", 41, 1500, 2))
    producer.close()
    [msg] = read_topic(bootstrap, done, expect=1)
    assert json.loads(msg.value or b"") == ["abc", 41]
    assert msg.key == b"abc"
    assert msg.headers["rows-deleted"] == b"1500"
    assert msg.headers["batches"] == b"2"
    assert msg.headers["idempotency-key"] == answer("abc", 41, 1500, 2).idempotency_key.encode()


def test_publish_to_a_missing_topic_raises_instead_of_pretending(client: KafkaClientConfig) -> None:
    producer = KafkaTopicWriter(client, delivery_timeout=3)
    publisher = builders.publisher(producer, unique("never-created"), unique("never-created"))
    with pytest.raises(PublishFailed):
        publisher.publish(answer("abc", 1, 1, 1))
    producer.close()


def test_two_consumers_in_one_group_split_the_partitions(bootstrap: str, client: KafkaClientConfig) -> None:
    topic, dlq, group = unique("req"), unique("dlq"), unique("group")
    create_topics(bootstrap, {topic: 2, dlq: 1})
    for p in (0, 1):
        produce_raw(bootstrap, topic, [json.dumps(f"p{p}-{i}").encode() for i in range(20)], partition=p)

    starters = [RecordingStarter(), RecordingStarter()]
    sources = [builders.kafka_source(client, topic, group) for _ in starters]
    producer = KafkaTopicWriter(client, delivery_timeout=30)
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=HandOff(s, st, builders.dead_letters(producer, dlq), budget=builders.budget()).run,
            args=(stop.is_set,),
        )
        for s, st in zip(sources, starters, strict=True)
    ]
    for t in threads:
        t.start()
    wait_for(lambda: sum(len(s.started) for s in starters) >= 40, timeout=60, message="40 hand-offs")
    stop.set()
    for t in threads:
        t.join(30)
    for s in sources:
        s.close()
    producer.close()
    all_ids = [r for s in starters for r, _ in s.started]
    assert sorted(all_ids) == sorted(f"p{p}-{i}" for p in (0, 1) for i in range(20))
    # Group semantics: every message handed off exactly once across the two members. (Which
    # member owns which partition depends on when each joined; under load one may take both.)
    assert len(all_ids) == len(set(all_ids))
    assert committed_lag(bootstrap, group, topic) == 0


def test_redpanda_profile_speaks_to_the_kafka_api(bootstrap: str) -> None:
    """Redpanda cannot run here; its profile (plaintext, no credentials) must work on the protocol."""
    client = redpanda_client_config(bootstrap)
    assert client.to_confluent()["security.protocol"] == "PLAINTEXT"
    done, failed = unique("done"), unique("failed")
    assert KafkaTopicAdmin(client).create({done: 1, failed: 1}) == {done: "created", failed: "created"}
    producer = KafkaTopicWriter(client, delivery_timeout=30)
    builders.publisher(producer, done, failed).publish(answer("rp", 3, 1, 1))
    producer.close()
    assert [json.loads(m.value or b"") for m in read_topic(bootstrap, done, expect=1)] == [["rp", 3]]


def test_marking_a_revoked_partition_is_harmless(bootstrap: str, client: KafkaClientConfig) -> None:
    """A concurrent hand-off may finish after its partition moved to another worker."""
    topic = unique("req")
    create_topics(bootstrap, {topic: 1})
    source = builders.kafka_source(client, topic, unique("group"))
    try:
        source.mark_done(InboundMessage(topic, 0, 5, b'"x"'))  # nothing assigned yet
    finally:
        source.close()


def group_timeouts_ms(bootstrap: str, group: str) -> tuple[str, str]:
    """The group's (session timeout, heartbeat interval) as the broker describes them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    (future,) = admin.describe_configs([ConfigResource(ResourceType.GROUP, group)]).values()
    found = future.result(timeout=15)
    return found["consumer.session.timeout.ms"].value, found["consumer.heartbeat.interval.ms"].value


def test_setup_topics_gives_the_group_its_session_timeout(bootstrap: str, monkeypatch, capsys) -> None:
    """With the consumer protocol the broker keeps the session timeout (Kafka's default: 45 s, how
    long a SIGKILLed worker's partitions wait): setup-topics sets the group's own from
    BROKER_SESSION_TIMEOUT_SECONDS (and a heartbeat a third of it), and a value the broker refuses
    is a warning naming its range, the group keeping what it had."""
    group = unique("group")
    monkeypatch.setenv("BROKER_KIND", "kafka")
    monkeypatch.setenv("BROKER_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("BROKER_GROUP", group)
    monkeypatch.setenv("BROKER_REQUEST_TOPIC", unique("req"))
    monkeypatch.setenv("BROKER_SESSION_TIMEOUT_SECONDS", "7")
    assert main(["setup-topics"]) == 0
    assert f"consumer group {group}: session timeout 7 s" in capsys.readouterr().out
    # the broker applies a group config once its metadata record is replayed: a moment later
    wait_for(
        lambda: group_timeouts_ms(bootstrap, group) == ("7000", "2333"),
        timeout=15,
        message="a 7000 ms session and a heartbeat a third of it",
    )

    monkeypatch.setenv("BROKER_SESSION_TIMEOUT_SECONDS", "2")  # below the broker's floor (6 s here)
    assert main(["setup-topics"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err, err
    assert "refused a session timeout of 2 s" in err, err
    assert "6000" in err, err  # the range the broker allows
    assert group_timeouts_ms(bootstrap, group) == ("7000", "2333")


def test_classic_protocol_moves_only_the_partitions_that_change_hands(
    bootstrap: str, client: KafkaClientConfig, caplog
) -> None:
    """`classic` (Redpanda, Kafka < 4) rebalances cooperatively: when a second member joins, the
    first gives up only the partitions that move (an eager rebalance revokes all four first)."""
    topic, group = unique("req"), unique("group")
    create_topics(bootstrap, {topic: 4})
    b = {"unavailable_after": 60.0, "session_timeout": 10.0, "group_protocol": "classic"}
    first = KafkaRequestSource(client, topic, group, **b)
    caplog.set_level(logging.INFO, logger="record_deleter.adapters.kafka")
    second = None
    try:
        wait_for(
            lambda: first.poll(0.2) is None and len(first.held_partitions()) == 4,
            timeout=60,
            message="the first member holds all four partitions",
        )
        second = KafkaRequestSource(client, topic, group, **b)
        wait_for(
            lambda: (
                (first.poll(0.1), second.poll(0.1)) is not None
                and len(first.held_partitions()) == 2
                and len(second.held_partitions()) == 2
            ),
            timeout=60,
            message="two partitions each",
        )
    finally:
        first.close()
        if second is not None:
            second.close()
    revoked = [
        m.group(1).split(", ")
        for r in caplog.records
        if (m := re.match(r"revoking partitions \[([^\]]*)\]", r.getMessage()))
    ]
    assert len(revoked[0]) == 2, f"only the two moving partitions are revoked first: {revoked}"


def test_two_workers_sharing_a_static_member_name_are_told_so(
    bootstrap: str, client: KafkaClientConfig
) -> None:
    """Static membership (BROKER_RDKAFKA_GROUP_INSTANCE_ID) with one name on two workers: one fences
    the other, whose run ends (its consumer is dead) with a line naming the setting to fix."""
    topic, group = unique("req"), unique("group")
    create_topics(bootstrap, {topic: 2})
    b = {"unavailable_after": 60.0, "session_timeout": 10.0, "group_protocol": "classic"}
    same = {"group.instance.id": unique("pod")}
    first = KafkaRequestSource(client, topic, group, **b, extra=same)
    second = None
    refused: list[str] = []
    try:
        wait_for(lambda: first.poll(0.2) is None and first.held_partitions(), timeout=60, message="joined")
        second = KafkaRequestSource(client, topic, group, **b, extra=same)

        def fenced() -> bool:
            for source in (first, second):
                try:
                    source.poll(0.1)  # type: ignore[union-attr]
                except BrokerRefused as exc:
                    refused.append(str(exc))
            return bool(refused)

        wait_for(fenced, timeout=60, message="one of the two fenced")
    finally:
        for source in (first, second):
            if source is not None:
                source._consumer.close()
    assert "BROKER_RDKAFKA_GROUP_INSTANCE_ID must differ per worker" in refused[0]
