"""Kafka adapters (confluent-kafka): request source, topic writer, request producer, admin.

Redpanda speaks the same protocol; `adapters.redpanda` only supplies its configuration profile.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from ..domain.errors import BrokerRefused, BrokerUnavailable, MessageTooLarge
from ..domain.evidence import Delivery
from ..domain.messages import OutboundMessage
from ..domain.model import InboundMessage
from ..domain.ports import RequestSource, TopicWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaClientConfig:
    """Connection settings shared by every client; `extra` passes librdkafka properties through."""

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    client_id: str = "record-deleter"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_confluent(self) -> dict[str, Any]:
        """librdkafka's configuration; `extra` is applied last, so it may refine anything here."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
            # librdkafka's own log lines through Python logging: the worker's one stream and
            # format (served on the clients' poll/flush calls), instead of raw lines on stderr
            "logger": logging.getLogger("librdkafka"),
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        if self.ssl_certificate_location:
            conf["ssl.certificate.location"] = self.ssl_certificate_location
        if self.ssl_key_location:
            conf["ssl.key.location"] = self.ssl_key_location
        if self.ssl_key_password is not None:
            conf["ssl.key.password"] = self.ssl_key_password
        conf.update(self.extra)
        return conf


# Errors that retrying cannot cure: wrong credentials, a certificate the other side refuses.
_REFUSALS = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL})


class _LastRefusal:
    """An `error_cb` that keeps the last refusal (authentication, TLS) librdkafka reported, so an
    error a person sees says *why* the brokers are unreachable instead of 'transport failure'.

    `reason`: a refusal no retry cures (wrong credentials). `hint`: also a TLS failure reported as a
    transport error (a certificate the other side refused), which only explains, never ends a run:
    a broker restarting can fail a handshake too."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.hint: str | None = None

    def __call__(self, err: KafkaError) -> None:
        text = err.str()
        if err.code() in _REFUSALS:
            self.reason = self.hint = text
            log.error("kafka: the brokers refused the connection: %s", text)
        elif err.code() == KafkaError._TRANSPORT and ("SSL" in text or "certificate" in text):
            self.hint = text

    def explain(self, what: str) -> str:
        if self.hint is None:
            return what
        return (
            f"{what} (the brokers refused the connection: {self.hint}; "
            "check the BROKER_SASL_* and BROKER_SSL_* settings)"
        )


def property_problem(properties: Mapping[str, str]) -> str | None:
    """Why librdkafka refuses these pass-through properties (an unknown name, a bad value), or
    None: a client built from them alone (no brokers, so nothing connects) is asked."""
    if not properties:
        return None
    try:
        Producer({"log_level": 0, **properties})
    except KafkaException as exc:
        return str(exc.args[0].str())
    return None


def _headers(msg: Message) -> tuple[tuple[str, bytes], ...]:
    headers = msg.headers() or []
    raw = list(headers.items()) if isinstance(headers, dict) else list(headers)
    return tuple((k, v if isinstance(v, bytes) else str(v or "").encode()) for k, v in raw)


class KafkaRequestSource(RequestSource):
    """A consumer-group member that commits only offsets stored after a durable hand-off.

    `enable.auto.offset.store=false`: poll never marks anything; `mark_done` stores offset+1 of a
    handed-off message and the background auto-commit (and the explicit commits on revoke and
    close) commit only stored offsets. If the brokers stay unreachable past `unavailable_after`
    seconds, `poll` raises BrokerUnavailable so the worker can exit and be restarted.
    """

    def __init__(
        self,
        client: KafkaClientConfig,
        topic: str,
        group: str,
        *,
        unavailable_after: float,
        session_timeout: float,
        group_protocol: str,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self._topic = topic
        self._unavailable_after = unavailable_after
        self._down_since: float | None = None
        self._paused = False
        self._held: set[int] = set()
        self._lag: int | None = None
        self._refusal = _LastRefusal()
        conf = {
            **client.to_confluent(),
            "group.id": group,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            **self._group_settings(group_protocol, session_timeout),
            "error_cb": self._on_error,
            # consumer lag for the metrics (librdkafka's statistics, every 15 s)
            "statistics.interval.ms": 15_000,
            "stats_cb": self._on_stats,
            **(extra or {}),
        }
        self._consumer = Consumer(conf)
        self._consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    @staticmethod
    def _group_settings(protocol: str, session_timeout: float) -> dict[str, Any]:
        """`consumer` (KIP-848): the broker owns the assignment and the session timeout (librdkafka
        refuses the classic session settings with it; the worker sets the group's own at start,
        `preflight.group_session`). `classic`: our timeout, and incremental cooperative
        rebalances, so a member joining or dying moves only the partitions that change hands
        instead of stopping the whole group (librdkafka's default, range/roundrobin, is eager)."""
        if protocol == "consumer":
            return {"group.protocol": "consumer"}
        if protocol == "classic":
            return {
                "group.protocol": "classic",
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": int(session_timeout * 1000),
                "heartbeat.interval.ms": max(100, int(session_timeout * 1000 / 3)),
            }
        raise ValueError(f"group protocol must be 'consumer' or 'classic', got {protocol!r}")

    def _on_error(self, err: KafkaError) -> None:
        if err.code() in _REFUSALS:
            self._refusal(err)
            return
        self._refusal(err)  # a TLS failure: kept to explain BrokerUnavailable, handled as below
        if err.code() in (KafkaError.UNSUPPORTED_VERSION, KafkaError._UNSUPPORTED_FEATURE):
            log.error(
                "kafka consumer: %s; a broker without the KIP-848 consumer group protocol needs "
                "BROKER_GROUP_PROTOCOL=classic",
                err.str(),
            )
            return
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            if self._down_since is None:
                self._down_since = time.monotonic()
            log.warning("kafka consumer: %s", err.str())
        else:
            log.error("kafka consumer error: %s", err.str())

    # The callbacks get the whole assignment with the classic protocol (every revoke takes all)
    # and only the change with the consumer protocol; `holding` is the worker's partitions either way.
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._held |= {p.partition for p in partitions}
        log.info("assigned partitions %s: holding %s", [p.partition for p in partitions], sorted(self._held))
        if self._paused:
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._held -= {p.partition for p in partitions}
        log.info(
            "revoking partitions %s: committing stored offsets; holding %s",
            [p.partition for p in partitions],
            sorted(self._held),
        )
        self._commit_quietly(consumer)

    @staticmethod
    def _commit_quietly(consumer: Consumer) -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit of stored offsets failed: %s", exc)

    def poll(self, timeout: float) -> InboundMessage | None:
        msg = self._consumer.poll(timeout)
        if self._refusal.reason is not None:
            # Wrong credentials or certificates: no retry cures them, and nothing was consumed (so
            # no offset stored or committed); exit and let the operator fix the settings.
            raise BrokerRefused(self._refusal.explain("cannot consume"))
        if msg is None:
            self._check_brokers()
            return None
        err = msg.error()
        if err is not None:
            # A fatal error reaches poll() as _FATAL (librdkafka's wrapper around the original code):
            # the consumer is dead from then on, so the run must end, not log and poll on.
            if err.fatal() or err.code() == KafkaError._FATAL:
                if "group.instance.id" in err.str():
                    # static membership: another process joined with this worker's instance id, a
                    # setting to fix (two workers sharing one name would fence each other forever)
                    raise BrokerRefused(
                        "another consumer joined the group with this worker's group.instance.id "
                        f"(BROKER_RDKAFKA_GROUP_INSTANCE_ID must differ per worker): {err.str()}"
                    )
                raise BrokerUnavailable(f"fatal consumer error: {err.str()}")
            log.warning("consumer: %s", err.str())
            return None
        self._down_since = None
        kind, stamp = msg.timestamp()
        return InboundMessage(
            topic=msg.topic() or self._topic,
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            value=msg.value(),
            key=msg.key(),
            headers=_headers(msg),
            timestamp=None if kind == TIMESTAMP_NOT_AVAILABLE else stamp,
        )

    def _check_brokers(self) -> None:
        if self._down_since is None or time.monotonic() - self._down_since < self._unavailable_after:
            return
        try:
            self._consumer.list_topics(self._topic, timeout=5)
        except KafkaException as exc:
            raise BrokerUnavailable(
                self._refusal.explain(
                    f"brokers unreachable for {time.monotonic() - self._down_since:.0f}s: {exc}"
                )
            ) from exc
        self._down_since = None

    def mark_done(self, message: InboundMessage) -> None:
        try:
            self._consumer.store_offsets(
                offsets=[TopicPartition(message.topic, message.partition, message.offset + 1)]
            )
        except KafkaException as exc:
            # The partition was revoked while this hand-off was under way: its new owner
            # redelivers from the last commit, and the duplicate attaches to the same workflow.
            log.info("offset %s/%d not stored (%s)", message.partition, message.offset, exc.args[0].str())

    def commit(self) -> None:
        self._commit_quietly(self._consumer)

    def held_partitions(self) -> frozenset[int]:
        return frozenset(self._held)

    def _on_stats(self, stats_json: str) -> None:
        try:
            partitions = json.loads(stats_json)["topics"][self._topic]["partitions"]
        except (ValueError, KeyError, TypeError):
            return
        lags = [p.get("consumer_lag_stored", -1) for key, p in partitions.items() if key != "-1"]
        known = [lag for lag in lags if lag >= 0]
        self._lag = sum(known) if known else None

    def lag(self) -> int | None:
        """Messages of the held partitions not yet handed off (stored offsets), from the last
        statistics; None before the first."""
        return self._lag

    def pause(self) -> None:
        self._paused = True
        self._consumer.pause(self._consumer.assignment())

    def resume(self) -> None:
        self._paused = False
        self._consumer.resume(self._consumer.assignment())

    def close(self) -> None:
        self.commit()
        self._consumer.close()


class KafkaTopicWriter(TopicWriter):
    """A thread-safe idempotent producer whose `write` returns only after the delivery report.

    One thread of its own serves the delivery reports (`poll`), and each writer waits on its own
    report's event. (Writers polling for themselves wait up to a poll timeout after their report
    was served by another writer's poll: most of a step thread's time, in a profile of the
    benchmark's end-to-end run.)"""

    def __init__(self, client: KafkaClientConfig, *, delivery_timeout: float) -> None:
        self._timeout = delivery_timeout
        self._refusal = _LastRefusal()
        self._producer = Producer(
            {
                **client.to_confluent(),
                "error_cb": self._refusal,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "delivery.timeout.ms": int(delivery_timeout * 1000),
            }
        )
        self._closing = threading.Event()
        self._reports = threading.Thread(target=self._serve_reports, name="kafka-delivery", daemon=True)
        self._reports.start()

    def _serve_reports(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.1)

    def write(self, topic: str, message: OutboundMessage) -> Delivery:
        done = threading.Event()
        outcome: list[tuple[KafkaError | None, Message]] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            outcome.append((err, msg))
            done.set()

        try:
            self._producer.produce(
                topic,
                value=message.value,
                key=message.key,
                headers=list(message.headers),
                on_delivery=on_delivery,
            )
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
                raise MessageTooLarge(f"{topic}: message of {len(message.value)} bytes is too large") from exc
            raise BrokerUnavailable(f"could not enqueue to {topic}: {exc}") from exc
        except BufferError as exc:
            raise BrokerUnavailable(f"could not enqueue to {topic}: {exc}") from exc
        if not done.wait(self._timeout + 5):
            raise BrokerUnavailable(f"no delivery report from {topic} within {self._timeout:.0f}s")
        err, delivered = outcome[0]
        if err is not None:
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                raise MessageTooLarge(f"{topic}: message of {len(message.value)} bytes is too large")
            raise BrokerUnavailable(self._refusal.explain(f"delivery to {topic} failed: {err.str()}"))
        # the delivery report names where the broker appended it: the answer's evidence
        return Delivery(topic, int(delivered.partition() or 0), int(delivered.offset() or 0))

    def close(self) -> None:
        remaining = self._producer.flush(self._timeout)
        self._closing.set()
        self._reports.join(5)
        if remaining:
            log.warning("%d messages were not delivered before shutdown", remaining)


class KafkaRequestProducer:
    """Produces request messages (the `produce` command); flushes before returning."""

    def __init__(self, client: KafkaClientConfig) -> None:
        self._producer = Producer({**client.to_confluent(), "enable.idempotence": True, "linger.ms": 5})
        self._errors: list[str] = []

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._errors.append(err.str())

        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=list(headers), on_delivery=on_delivery
                )
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        remaining = self._producer.flush(timeout)
        if remaining or self._errors:
            raise BrokerUnavailable(
                f"{remaining} request(s) undelivered, {len(self._errors)} failed: {self._errors[:3]}"
            )


class KafkaTopicAdmin:
    """Creates the project's topics idempotently."""

    def __init__(self, client: KafkaClientConfig) -> None:
        self._refusal = _LastRefusal()
        conf: dict[str, Any] = {**client.to_confluent(), "error_cb": self._refusal}
        self._admin = AdminClient(conf)

    def _failure(self, what: str) -> BrokerUnavailable:
        self._admin.poll(0)  # serves error_cb: the refusal, if that was the cause
        cls = BrokerRefused if self._refusal.reason is not None else BrokerUnavailable
        return cls(self._refusal.explain(what))

    def create(self, topics: Mapping[str, int], replication_factor: int = 1) -> dict[str, str]:
        """Create each topic (name -> partitions); returns name -> 'created' | 'exists'."""
        futures = self._admin.create_topics(
            [
                NewTopic(name, num_partitions=n, replication_factor=replication_factor)
                for name, n in topics.items()
            ],
            operation_timeout=30,
        )
        outcome: dict[str, str] = {}
        for name, future in futures.items():
            try:
                future.result()
                outcome[name] = "created"
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    outcome[name] = "exists"
                else:
                    raise self._failure(f"could not create topic {name}: {exc.args[0].str()}") from exc
        return outcome

    def partitions(self, topic: str) -> int:
        """Partitions of `topic` (0: it does not exist); raises BrokerUnavailable when unreachable."""
        try:
            meta = self._admin.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise self._failure(f"cannot reach the brokers: {exc.args[0].str()}") from exc
        t = meta.topics.get(topic)
        if t is None or t.error is not None:
            return 0
        return len(t.partitions)

    def set_group_session_timeout(self, group: str, seconds: float) -> str | None:
        """Give consumer group `group` a session timeout of its own (KIP-848's per-group
        `consumer.session.timeout.ms`), and a heartbeat a third of it: with the consumer protocol
        the broker, not the client, owns both, and Kafka's default session of 45 s is how long a
        crashed worker's partitions wait. A broker that refuses the heartbeat (its floor,
        `group.consumer.min.heartbeat.interval.ms`, is 5 s by default) keeps its own heartbeat.
        Returns None when the session timeout is set, else the broker's refusal in a few words (it
        names the range it allows: `group.consumer.min/max.session.timeout.ms`)."""
        session = ("consumer.session.timeout.ms", int(seconds * 1000))
        heartbeat = ("consumer.heartbeat.interval.ms", max(500, int(seconds * 1000 / 3)))
        refused = self._set_group_configs(group, [session, heartbeat])
        return refused and self._set_group_configs(group, [session])

    def _set_group_configs(self, group: str, values: list[tuple[str, int]]) -> str | None:
        entries = [ConfigEntry(k, str(v), incremental_operation=AlterConfigOpType.SET) for k, v in values]
        resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)
        try:
            for future in self._admin.incremental_alter_configs([resource]).values():
                future.result(timeout=15)
        except KafkaException as exc:
            return str(exc.args[0].str())
        except Exception as exc:  # a timeout, or a broker too old for group configs
            return f"{type(exc).__name__}: {exc}"
        return None
