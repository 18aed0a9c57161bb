"""Settings: typed, validated at start-up; a bad value is one line naming the setting; exit 2."""

from __future__ import annotations

import pytest

from record_deleter.entrypoints.cli import main
from record_deleter.entrypoints.containers import kafka_client_config
from record_deleter.entrypoints.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith(
            ("BROKER_", "DATABASE_", "RESONATE_", "WORKFLOW_", "WORKER_", "AUDIT_", "RECORD_DELETER_")
        ):
            monkeypatch.delenv(key)


def test_defaults_are_production_shaped() -> None:
    s = load_settings()
    assert s.broker.kind == "kafka"
    assert s.broker.request_topic == "records_to_be_deleted"
    assert s.broker.completion_topic == "records_that_were_deleted"
    assert s.resonate.mode == "remote"
    assert s.workflow.batch_size == 1000


@pytest.mark.parametrize(
    ("env", "protocol"),
    [
        ({}, "consumer"),
        ({"BROKER_KIND": "redpanda"}, "classic"),
        ({"BROKER_GROUP_PROTOCOL": "classic"}, "classic"),
        ({"BROKER_KIND": "redpanda", "BROKER_GROUP_PROTOCOL": "consumer"}, "consumer"),
    ],
)
def test_the_group_protocol_is_kip_848_on_kafka_and_classic_on_redpanda_unless_set(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], protocol: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert load_settings().broker.effective_group_protocol == protocol


def test_the_consumer_protocol_leaves_the_session_to_the_broker() -> None:
    from record_deleter.adapters.kafka import KafkaRequestSource

    assert KafkaRequestSource._group_settings("consumer", 10) == {"group.protocol": "consumer"}
    classic = KafkaRequestSource._group_settings("classic", 10)
    assert (classic["group.protocol"], classic["session.timeout.ms"]) == ("classic", 10_000)


def test_an_unknown_group_protocol_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BROKER_GROUP_PROTOCOL", "eager")
    assert main(["list"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "BROKER_GROUP_PROTOCOL" in line


def test_there_is_no_default_database() -> None:
    """Which database's rows get deleted is never a guess: without DATABASE_URL there is none."""
    assert load_settings().database.url is None


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory", "memory"),
        ("sqlite:///var/lib/app.db", "sql"),
        ("postgresql+psycopg://app:pw@db:5432/app", "sql"),
        ("postgresql://app@db/app", "sql"),
    ],
)
def test_database_url_forms(monkeypatch: pytest.MonkeyPatch, url: str, kind: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    s = load_settings()
    assert s.database.url_value == url
    assert s.database.kind == kind


def test_database_password_is_hidden_where_the_url_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://app:hunter2@db:5432/app")
    shown = load_settings().database.display_url
    assert "hunter2" not in shown
    assert shown.startswith("postgresql+psycopg://app:")
    assert shown.endswith("@db:5432/app")


def test_step_retries_have_a_backoff_but_no_attempt_limit(tmp_path) -> None:
    """Transient trouble never fails a record, so there is no attempt limit to set: a config file
    that still sets the old one is refused by name rather than silently ignored."""
    s = load_settings()
    assert 0 < s.workflow.step_retry_delay <= s.workflow.step_retry_max_delay
    cfg = tmp_path / "rd.toml"
    cfg.write_text("[workflow]\nstep_max_attempts = 5\n")
    with pytest.raises(SettingsError, match=r"unknown setting workflow\.step_max_attempts"):
        load_settings(str(cfg))


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("BROKER_KIND", "rabbitmq", "'kafka', 'redpanda' or 'memory'"),
        ("BROKER_BOOTSTRAP_SERVERS", "localhost", "host:port"),
        ("WORKFLOW_BATCH_SIZE", "0", "greater than or equal to 1"),
        ("WORKFLOW_BATCH_SIZE", "many", "valid integer"),
        ("WORKFLOW_PAUSE_SECONDS", "-1", "greater than or equal to 0"),
        ("RESONATE_MODE", "cloud", "'local' or 'remote'"),
        ("RESONATE_URL", "localhost:8001", "http(s)://host:port"),
        ("DATABASE_URL", "mysql://db", "sqlite:/// URL or a postgresql+psycopg://"),
        ("DATABASE_DELETION_PLAN", "record_rows", "table:key_column"),
        ("WORKER_LOG_FORMAT", "xml", "'text' or 'json'"),
    ],
)
def test_bad_setting_names_the_variable_and_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert env in text or "deletion plan" in text
    assert expected in text
    assert "\n" not in text


def test_bad_setting_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BROKER_KIND", "rabbitmq")
    assert main(["setup-topics"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("record-deleter: invalid setting BROKER_KIND")


def test_password_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("BROKER_PARTITIONS", "0")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)


def test_secret_is_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_SASL_USERNAME", "ada")
    monkeypatch.setenv("BROKER_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("BROKER_SASL_MECHANISM", "SCRAM-SHA-512")
    s = load_settings()
    assert "hunter2" not in repr(s)
    assert s.broker.sasl_password is not None
    assert s.broker.sasl_password.get_secret_value() == "hunter2"
    assert kafka_client_config(s.broker).to_confluent()["sasl.password"] == "hunter2"


def test_config_file_then_env_wins(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "rd.toml"
    cfg.write_text('[broker]\nkind = "redpanda"\ngroup = "from-file"\n[workflow]\nbatch_size = 50\n')
    monkeypatch.setenv("WORKFLOW_BATCH_SIZE", "70")
    s = load_settings(str(cfg))
    assert s.broker.kind == "redpanda"
    assert s.broker.group == "from-file"
    assert s.workflow.batch_size == 70


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[brokr]\nkind='kafka'\n", "unknown section"),
        ("[broker]\nknd='kafka'\n", "unknown setting broker.knd"),
        ("[broker\n", "not valid TOML"),
    ],
)
def test_bad_config_file(tmp_path, content: str, expected: str) -> None:
    cfg = tmp_path / "rd.toml"
    cfg.write_text(content)
    with pytest.raises(SettingsError, match=expected):
        load_settings(str(cfg))


def test_missing_config_file_is_named() -> None:
    with pytest.raises(SettingsError, match=r"/nope\.toml does not exist"):
        load_settings("/nope.toml")


def test_a_commands_own_settings_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`demo` runs on its embedded defaults even where the shell exports a real deployment's."""
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://app:secret@db.example:5432/app")
    monkeypatch.setenv("BROKER_KIND", "kafka")
    s = load_settings(None, {"database": {"url": "memory"}, "broker": {"kind": "memory", "partitions": 1}})
    assert (s.database.url_value, s.broker.kind, s.broker.partitions) == ("memory", "memory", 1)


def test_a_bad_override_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="partitions"):
        load_settings(None, {"broker": {"partitions": 0}})


def test_a_misspelt_variable_is_named_with_the_setting_it_resembles() -> None:
    from record_deleter.entrypoints.settings import unknown_variables

    warnings = unknown_variables(
        {"BROKER_BOOTSTRAP_SERVER": "x", "WORKER_MAX_INFLIGHT": "3", "HOME": "/root"}
    )
    assert warnings == [
        "BROKER_BOOTSTRAP_SERVER is not a setting and is ignored; did you mean BROKER_BOOTSTRAP_SERVERS?",
        "WORKER_MAX_INFLIGHT is not a setting and is ignored; did you mean WORKER_MAX_IN_FLIGHT?",
    ]
    assert unknown_variables({"BROKER_BOOTSTRAP_SERVERS": "x", "DATABASE_URL": "memory"}) == []


@pytest.mark.parametrize("variable", ["WORKER_HANDOFF_RETRY_SECONDS", "BROKER_UNAVAILABLE_AFTER_SECONDS"])
def test_an_infinite_wait_is_refused(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "inf")
    with pytest.raises(SettingsError, match=variable):
        load_settings()


# --- AUDIT_: retention, hashed ledger ids, the chain key; WORKER_NAME -----------------------------


def test_audit_defaults_and_the_worker_name() -> None:
    import os
    import socket

    s = load_settings()
    assert (s.audit.retention_days, s.audit.record_ids, s.audit.chain_key) == (365, "clear", None)
    assert s.identity.worker == f"{socket.gethostname()}:{os.getpid()}"
    assert (s.identity.ledger_key, s.identity.chain_key) == (None, None)


def test_the_worker_name_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_NAME", "pod-7")
    assert load_settings().identity.worker == "pod-7"


@pytest.mark.parametrize("days", ["0", "36501", "soon"])
def test_retention_days_out_of_bounds_is_one_line(monkeypatch: pytest.MonkeyPatch, days: str) -> None:
    monkeypatch.setenv("AUDIT_RETENTION_DAYS", days)
    with pytest.raises(
        SettingsError, match=f"invalid setting AUDIT_RETENTION_DAYS \\(audit.retention_days\\) = '{days}'"
    ):
        load_settings()


def test_hashed_ledger_ids_need_the_log_hash_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_RECORD_IDS", "hashed")
    with pytest.raises(SettingsError, match="AUDIT_RECORD_IDS=hashed needs WORKER_LOG_HASH_KEY"):
        load_settings()


def test_hashed_ledger_ids_use_the_logs_key_so_a_log_line_matches_the_ledger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from record_deleter.adapters.evidence_chain import ledger_id
    from record_deleter.adapters.observability import hash_record_id

    monkeypatch.setenv("AUDIT_RECORD_IDS", "hashed")
    monkeypatch.setenv("WORKER_LOG_HASH_KEY", "k3y")
    identity = load_settings().identity
    assert identity.ledger_key == b"k3y"
    stored = identity.stored_id("ada@example.com")
    assert stored == ledger_id(b"k3y", "ada@example.com")
    assert len(stored) == 64
    assert stored.startswith(hash_record_id(b"k3y", "ada@example.com"))


def test_the_chain_key_comes_from_a_file_and_is_never_shown(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "chain-key"
    secret.write_text("chain secret\n")
    monkeypatch.setenv("AUDIT_CHAIN_KEY_FILE", str(secret))
    monkeypatch.setenv("DATABASE_URL", "memory")
    assert load_settings().identity.chain_key == b"chain secret"
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "AUDIT_CHAIN_KEY=***" in out
    assert "AUDIT_RETENTION_DAYS=365" in out
    assert "chain secret" not in out


def test_a_misspelt_audit_variable_is_named_with_the_setting_it_resembles() -> None:
    from record_deleter.entrypoints.settings import unknown_variables

    assert unknown_variables({"AUDIT_RETENTON_DAYS": "30"}) == [
        "AUDIT_RETENTON_DAYS is not a setting and is ignored; did you mean AUDIT_RETENTION_DAYS?"
    ]


def test_dashboard_settings_are_a_concern_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from record_deleter.entrypoints.settings import effective_settings, unknown_variables

    assert load_settings().dashboard.address == "127.0.0.1"  # the page shows record ids
    monkeypatch.setenv("DASHBOARD_PORT", "9000")
    monkeypatch.setenv("DASHBOARD_WORKER_URLS", "http://127.0.0.1:9101, http://127.0.0.1:9102/")
    settings = load_settings()
    assert settings.dashboard.port == 9000
    assert settings.dashboard.worker_url_list == ["http://127.0.0.1:9101", "http://127.0.0.1:9102"]
    assert ("DASHBOARD_PORT", "9000") in effective_settings(settings)
    assert unknown_variables({"DASHBOARD_PROT": "1"}) == [
        "DASHBOARD_PROT is not a setting and is ignored; did you mean DASHBOARD_PORT?"
    ]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DASHBOARD_PORT", "70000"),
        ("DASHBOARD_WORKER_URLS", "http://u:secret@host:1"),
        ("DASHBOARD_WORKER_URLS", "x"),
    ],
)
def test_a_bad_dashboard_setting_is_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable) as info:
        load_settings()
    assert "secret" not in str(info.value)
