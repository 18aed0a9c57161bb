"""The Kafka adapters and the worker over authenticated, encrypted connections to a real broker.

`scripts/services.sh up` gives the broker a SASL_SSL listener (SCRAM-SHA-256, SCRAM-SHA-512 and
PLAIN; its SCRAM user made at format time) and an SSL listener that requires a client certificate,
both with a certificate for 127.0.0.1 signed by a CA the script makes. Each test goes through the
settings, so what is proven is the path a deployment takes: BROKER_* variables -> every client.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from record_deleter.adapters.kafka import KafkaRequestSource, KafkaTopicAdmin, KafkaTopicWriter
from record_deleter.domain.errors import BrokerRefused, BrokerUnavailable
from record_deleter.domain.messages import OutboundMessage
from record_deleter.entrypoints.cli import main
from record_deleter.entrypoints.containers import kafka_client_config
from record_deleter.entrypoints.settings import load_settings
from tests.harness import Deployment, check_errors, committed_lag, kafka_bootstrap, unique
from tests.harness.endpoints import endpoint, wait_for
from tests.harness.kafka import read_topic
from tests.harness.processes import worker_process

pytestmark = pytest.mark.integration


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> str:
    """The plaintext listener (for the test's own checks); the BROKER_* settings are the test's."""
    bootstrap = kafka_bootstrap()
    for key in list(os.environ):
        if key.startswith("BROKER_"):
            monkeypatch.delenv(key)
    return bootstrap


def sasl_env(kind: str, mechanism: str | None, password: str | None = None) -> dict[str, str]:
    env = {
        "BROKER_KIND": kind,
        "BROKER_BOOTSTRAP_SERVERS": endpoint(
            "SERVICES_KAFKA_SASL_BOOTSTRAP", "the broker's SASL_SSL listener"
        ),
        "BROKER_SASL_USERNAME": endpoint("SERVICES_KAFKA_SASL_USERNAME", "the broker's SASL user"),
        "BROKER_SASL_PASSWORD": password or endpoint("SERVICES_KAFKA_SASL_PASSWORD", "its password"),
        "BROKER_SSL_CA_LOCATION": endpoint("SERVICES_KAFKA_CA", "the CA of the broker's certificate"),
    }
    if mechanism is not None:
        env["BROKER_SASL_MECHANISM"] = mechanism
    return env


def settings_from(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]):  # type: ignore[no-untyped-def]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return load_settings()


def round_trip(settings, plain: str) -> None:  # type: ignore[no-untyped-def]
    """Admin creates a topic, the producer writes to it, the request source reads and commits it:
    all three over the settings' connection."""
    client = kafka_client_config(settings.broker, settings.broker_properties)
    topic, group = unique("tls-req"), unique("tls-group")
    admin = KafkaTopicAdmin(client)
    assert admin.create({topic: 1}) == {topic: "created"}
    assert admin.partitions(topic) == 1
    writer = KafkaTopicWriter(client, delivery_timeout=20)
    try:
        writer.write(topic, OutboundMessage(key=b"k", value=b'"ada@example.com"', headers=()))
    finally:
        writer.close()
    source = KafkaRequestSource(
        client,
        topic,
        group,
        unavailable_after=30,
        session_timeout=10,
        group_protocol=settings.broker.effective_group_protocol,
    )
    try:
        got = wait_for(lambda: source.poll(0.5), timeout=60, message="the request, read over TLS")
        assert got.value == b'"ada@example.com"'
        source.mark_done(got)
        source.commit()
    finally:
        source.close()
    assert committed_lag(plain, group, topic) == 0


@pytest.mark.parametrize(
    ("kind", "mechanism"),
    [
        ("kafka", "SCRAM-SHA-256"),
        ("kafka", "SCRAM-SHA-512"),
        ("kafka", "PLAIN"),
        ("redpanda", None),  # the profile's default: SASL_SSL + SCRAM-SHA-256
        ("redpanda", "SCRAM-SHA-512"),
    ],
)
def test_admin_producer_and_consumer_over_sasl_ssl(
    monkeypatch, plain: str, kind: str, mechanism: str | None
) -> None:
    settings = settings_from(monkeypatch, sasl_env(kind, mechanism))
    assert settings.broker.effective_security_protocol == "SASL_SSL"
    round_trip(settings, plain)


@pytest.mark.parametrize("kind", ["kafka", "redpanda"])
def test_mtls_client_certificate(monkeypatch, plain: str, kind: str) -> None:
    env = {
        "BROKER_KIND": kind,
        "BROKER_BOOTSTRAP_SERVERS": endpoint("SERVICES_KAFKA_MTLS_BOOTSTRAP", "the broker's mTLS listener"),
        "BROKER_SECURITY_PROTOCOL": "SSL",
        "BROKER_SSL_CA_LOCATION": endpoint("SERVICES_KAFKA_CA", "the CA"),
        "BROKER_SSL_CERTIFICATE_LOCATION": endpoint("SERVICES_TLS_CLIENT_CERT", "a client certificate"),
        "BROKER_SSL_KEY_LOCATION": endpoint("SERVICES_TLS_CLIENT_KEY", "its key"),
    }
    round_trip(settings_from(monkeypatch, env), plain)


def test_mtls_without_a_client_certificate_is_refused(monkeypatch, plain: str) -> None:
    env = {
        "BROKER_BOOTSTRAP_SERVERS": endpoint("SERVICES_KAFKA_MTLS_BOOTSTRAP", "the broker's mTLS listener"),
        "BROKER_SECURITY_PROTOCOL": "SSL",
        "BROKER_SSL_CA_LOCATION": endpoint("SERVICES_KAFKA_CA", "the CA"),
        "BROKER_RDKAFKA_LOG__LEVEL": "0",  # the pass-through: no log line per refused connection
    }
    settings = settings_from(monkeypatch, env)
    assert settings.broker_properties == {"log_level": "0"}
    admin = KafkaTopicAdmin(kafka_client_config(settings.broker, settings.broker_properties))
    with pytest.raises(BrokerUnavailable, match="refused the connection"):
        admin.partitions("anything")


@pytest.mark.parametrize("kind", ["kafka", "redpanda"])
def test_a_wrong_password_is_refused_clearly_and_nothing_is_committed(
    monkeypatch, plain: str, kind: str
) -> None:
    topic, group = unique("tls-req"), unique("tls-group")
    good = settings_from(monkeypatch, sasl_env(kind, "SCRAM-SHA-256"))
    good_client = kafka_client_config(good.broker)
    KafkaTopicAdmin(good_client).create({topic: 1})
    writer = KafkaTopicWriter(good_client, delivery_timeout=20)
    writer.write(topic, OutboundMessage(key=b"k", value=b'"ada"', headers=()))
    writer.close()

    bad = settings_from(monkeypatch, sasl_env(kind, "SCRAM-SHA-256", password="not-the-password"))
    bad_client = kafka_client_config(bad.broker)
    with pytest.raises(BrokerUnavailable, match="Authentication failed"):
        KafkaTopicAdmin(bad_client).partitions(topic)
    source = KafkaRequestSource(
        bad_client,
        topic,
        group,
        unavailable_after=30,
        session_timeout=10,
        group_protocol=bad.broker.effective_group_protocol,
    )

    def poll_until_refused() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert source.poll(0.5) is None, "nothing is read with a wrong password"

    try:
        with pytest.raises(BrokerUnavailable, match=r"refused the connection: .*Authentication failed"):
            poll_until_refused()
    finally:
        source._consumer.close()
    assert committed_lag(plain, group, topic) == 1, "no offset committed"


@pytest.mark.parametrize("kind", ["kafka", "redpanda"])
def test_worker_process_answers_over_sasl_ssl(tmp_path: Path, kind: str) -> None:
    """The real `record-deleter worker` consumes, answers and commits through the SASL_SSL listener
    (the deployment's own reads and writes use the plaintext one)."""
    transport = sasl_env(kind, "SCRAM-SHA-512")
    dep = Deployment.create(tmp_path, f"sasl-{kind}", partitions=1, **transport)
    try:
        records = dep.seed([3, 12])
        with worker_process(dep.env, tmp_path / "worker.log") as worker:
            dep.request(records)
            answers = read_topic(dep.bootstrap, dep.completion_topic, expect=2, timeout=90, settle=0.5)
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
        assert sorted(json.loads(a.value or b"null")[0] for a in answers) == sorted(r.id for r in records)
        assert dep.rows_left() == 0
        wait_for(lambda: dep.lag() == 0, timeout=30, message="the worker's offsets committed over SASL_SSL")
    finally:
        dep.close()


def test_worker_with_a_wrong_password_exits_with_one_clear_line(tmp_path: Path) -> None:
    """Refused credentials are a setting to fix: the worker's start-up check says so in one line,
    exit 2, before it joins the group; nothing is consumed or committed."""
    transport = sasl_env("kafka", "SCRAM-SHA-256", password="not-the-password")
    dep = Deployment.create(tmp_path, "sasl-wrong", partitions=1, **transport)
    try:
        dep.request(dep.seed([1]))
        with worker_process(dep.env, tmp_path / "worker.log") as worker:
            code = wait_for(worker.poll, timeout=90, message="the worker to give up")
        assert code == 2
        log = (tmp_path / "worker.log").read_text()
        errors = check_errors(log)
        assert len(errors) == 1, log[-3000:]
        assert "the brokers refused the connection" in errors[0]
        assert "SASL authentication error: Authentication failed" in errors[0]
        assert "not-the-password" not in log
        assert dep.lag() == 1, "no offset committed"
    finally:
        dep.close()


def test_a_consumer_refused_at_run_time_raises_broker_refused(monkeypatch, plain: str) -> None:
    """After start-up (credentials rotated under a running worker) the request source ends the run
    with the refusal: a BrokerRefused, which the worker turns into exit 3 for its supervisor."""
    settings = settings_from(monkeypatch, sasl_env("kafka", "PLAIN", password="not-the-password"))
    source = KafkaRequestSource(
        kafka_client_config(settings.broker),
        unique("tls-req"),
        unique("tls-group"),
        unavailable_after=30,
        session_timeout=10,
        group_protocol="consumer",
    )

    def poll_until_refused() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            source.poll(0.5)

    try:
        with pytest.raises(BrokerRefused, match="Invalid username or password"):
            poll_until_refused()
    finally:
        source._consumer.close()


@pytest.mark.parametrize("kind", ["kafka", "redpanda"])
def test_setup_topics_and_produce_commands_over_sasl_ssl(monkeypatch, capsys, plain: str, kind: str) -> None:
    """The operator commands build their clients from the same settings: `setup-topics` (admin)
    and `produce` (the request producer) over SASL_SSL."""
    names = {
        "BROKER_REQUEST_TOPIC": unique("req"),
        "BROKER_COMPLETION_TOPIC": unique("done"),
        "BROKER_FAILURE_TOPIC": unique("failed"),
        "BROKER_DEAD_LETTER_TOPIC": unique("dlq"),
    }
    settings_from(monkeypatch, {**sasl_env(kind, "SCRAM-SHA-512"), **names, "BROKER_PARTITIONS": "1"})
    assert main(["setup-topics"]) == 0
    assert capsys.readouterr().out.count(": created") == 4
    assert main(["produce", "-n", "3"]) == 0
    got = read_topic(plain, names["BROKER_REQUEST_TOPIC"], expect=3, timeout=30, settle=0.2)
    assert len(got) == 3
