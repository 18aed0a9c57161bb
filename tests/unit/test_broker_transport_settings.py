"""Broker transport settings: SASL, TLS, mTLS and librdkafka pass-through reach every client,
and settings that contradict each other are one line at start-up, exit 2."""

from __future__ import annotations

import os

import pytest

from record_deleter.entrypoints.cli import main
from record_deleter.entrypoints.containers import kafka_client_config
from record_deleter.entrypoints.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("BROKER_", "DATABASE_", "RESONATE_", "WORKFLOW_", "WORKER_", "RECORD_DELETER_")):
            monkeypatch.delenv(key)


@pytest.fixture
def pem(tmp_path) -> dict[str, str]:
    files = {}
    for name in ("ca", "cert", "key"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN CERTIFICATE-----\n")
        files[name] = str(path)
    return files


def _conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, object]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    return kafka_client_config(s.broker, s.broker_properties).to_confluent()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_kafka_with_credentials_and_a_mechanism_is_sasl_ssl(monkeypatch, mechanism: str, pem) -> None:
    conf = _conf(
        monkeypatch,
        BROKER_SASL_USERNAME="ada",
        BROKER_SASL_PASSWORD="pw",
        BROKER_SASL_MECHANISM=mechanism,
        BROKER_SSL_CA_LOCATION=pem["ca"],
    )
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == mechanism
    assert (conf["sasl.username"], conf["sasl.password"]) == ("ada", "pw")
    assert conf["ssl.ca.location"] == pem["ca"]


def test_mtls_client_certificate_reaches_the_client(monkeypatch, pem) -> None:
    conf = _conf(
        monkeypatch,
        BROKER_SECURITY_PROTOCOL="SSL",
        BROKER_SSL_CA_LOCATION=pem["ca"],
        BROKER_SSL_CERTIFICATE_LOCATION=pem["cert"],
        BROKER_SSL_KEY_LOCATION=pem["key"],
        BROKER_SSL_KEY_PASSWORD="keypw",
    )
    assert conf["security.protocol"] == "SSL"
    assert conf["ssl.certificate.location"] == pem["cert"]
    assert conf["ssl.key.location"] == pem["key"]
    assert conf["ssl.key.password"] == "keypw"
    assert "sasl.mechanism" not in conf


def test_librdkafka_properties_pass_through_from_a_file_and_the_environment(monkeypatch, tmp_path) -> None:
    props = tmp_path / "client.properties"
    props.write_text("# comment\nsocket.keepalive.enable = true\nclient.rack=a\n\n")
    conf = _conf(
        monkeypatch,
        BROKER_PROPERTIES_FILE=str(props),
        BROKER_RDKAFKA_CLIENT_RACK="b",
        BROKER_RDKAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM="https",
        BROKER_RDKAFKA_LOG__LEVEL="3",
    )
    assert conf["log_level"] == "3"  # `__` stands for a `_` in the name
    assert conf["socket.keepalive.enable"] == "true"
    assert conf["client.rack"] == "b"  # the environment wins over the file
    assert conf["ssl.endpoint.identification.algorithm"] == "https"


def test_pass_through_variables_are_not_reported_as_unknown(monkeypatch, capsys) -> None:
    monkeypatch.setenv("BROKER_RDKAFKA_CLIENT_RACK", "a")
    load_settings()
    assert "BROKER_RDKAFKA_CLIENT_RACK" not in capsys.readouterr().err


def test_redpanda_profile_defaults_and_mtls(monkeypatch, pem) -> None:
    conf = _conf(
        monkeypatch,
        BROKER_KIND="redpanda",
        BROKER_SASL_USERNAME="ada",
        BROKER_SASL_PASSWORD="pw",
        BROKER_SSL_CERTIFICATE_LOCATION=pem["cert"],
        BROKER_SSL_KEY_LOCATION=pem["key"],
    )
    assert (conf["security.protocol"], conf["sasl.mechanism"]) == ("SASL_SSL", "SCRAM-SHA-256")
    assert conf["ssl.certificate.location"] == pem["cert"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BROKER_SASL_USERNAME": "ada", "BROKER_SASL_PASSWORD": "pw"}, "BROKER_SASL_MECHANISM is not"),
        ({"BROKER_SASL_USERNAME": "ada", "BROKER_SASL_MECHANISM": "PLAIN"}, "BROKER_SASL_PASSWORD is not"),
        (
            {"BROKER_SECURITY_PROTOCOL": "SASL_SSL", "BROKER_SASL_MECHANISM": "PLAIN"},
            "needs BROKER_SASL_USERNAME",
        ),
        ({"BROKER_KIND": "redpanda", "BROKER_SECURITY_PROTOCOL": "SASL_SSL"}, "needs BROKER_SASL_USERNAME"),
        (
            {"BROKER_SECURITY_PROTOCOL": "SSL", "BROKER_SASL_USERNAME": "a", "BROKER_SASL_PASSWORD": "p"},
            "would ignore them",
        ),
        ({"BROKER_SASL_MECHANISM": "PLAIN"}, "does not use SASL"),
        (
            {"BROKER_SECURITY_PROTOCOL": "SSL", "BROKER_SSL_CA_LOCATION": "/nonexistent/ca.pem"},
            "no such file",
        ),
        ({"BROKER_SSL_CA_LOCATION": "/etc/hostname"}, "does not use TLS"),
        ({"BROKER_SECURITY_PROTOCOL": "SSL", "BROKER_SSL_KEY_LOCATION": "/etc/hostname"}, "needs both"),
        ({"BROKER_PROPERTIES_FILE": "/nonexistent/client.properties"}, "cannot read it"),
        ({"BROKER_RDKAFKA_BOGUS_PROPERTY": "1"}, 'No such configuration property: "bogus.property"'),
        ({"BROKER_RDKAFKA_SOCKET_KEEPALIVE_ENABLE": "maybe"}, "Expected bool value"),
    ],
)
def test_inconsistent_broker_settings_are_one_line_and_exit_2(monkeypatch, capsys, env, expected) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError, match=expected):
        load_settings()
    assert main(["setup-topics"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert expected in err
    assert "pw" not in err.replace("password", "")


def test_a_properties_line_without_a_value_is_refused(monkeypatch, tmp_path) -> None:
    props = tmp_path / "client.properties"
    props.write_text("socket.keepalive.enable\n")
    monkeypatch.setenv("BROKER_PROPERTIES_FILE", str(props))
    with pytest.raises(SettingsError, match="line 1 is not name=value"):
        load_settings()


def test_memory_broker_ignores_transport_settings(monkeypatch) -> None:
    monkeypatch.setenv("BROKER_KIND", "memory")
    monkeypatch.setenv("BROKER_SASL_USERNAME", "ada")
    assert load_settings().broker.kind == "memory"
