"""Secrets and personal data in settings: masked wherever a value is shown, read from files as
container platforms mount them, and Resonate credentials from their own settings only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from record_deleter.entrypoints.cli import main
from record_deleter.entrypoints.settings import SettingsError, effective_settings, load_settings

pytestmark = pytest.mark.unit

SECRET = "s3cr3t-Pa55"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("BROKER_", "DATABASE_", "RESONATE_", "WORKFLOW_", "WORKER_", "RECORD_DELETER_")):
            monkeypatch.delenv(key)


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert SECRET not in err
    return err


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://u:{SECRET}@h/db",
        f"postgresql+psycopg://u:{SECRET}@h:notaport/db",
        f"postgresql+psycopg://u:{SECRET}@h/db?password={SECRET}&x",
        f"sqlite://u:{SECRET}@/[",
        f"{SECRET}",
    ],
)
def test_a_rejected_database_url_never_shows_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        s = load_settings()
    except SettingsError:
        err = _one_line_exit_2(["list"], capsys)
        assert "DATABASE_URL" in err
    else:  # accepted (a valid URL): then it must be masked everywhere it is shown
        assert SECRET not in repr(s)
        assert SECRET not in s.database.display_url


def test_the_database_url_is_a_secret_value(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql+psycopg://app:{SECRET}@db:5432/app?password={SECRET}"
    monkeypatch.setenv("DATABASE_URL", url)
    s = load_settings()
    assert s.database.url_value == url
    assert SECRET not in repr(s)
    assert SECRET not in str(s)
    assert s.database.display_url == "postgresql+psycopg://app:***@db:5432/app"


def test_config_show_prints_every_setting_with_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://app:{SECRET}@db:5432/app")
    monkeypatch.setenv("BROKER_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("BROKER_SASL_USERNAME", "svc")
    monkeypatch.setenv("BROKER_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("RESONATE_USERNAME", "svc")
    monkeypatch.setenv("RESONATE_PASSWORD", SECRET)
    monkeypatch.setenv("WORKER_LOG_RECORD_IDS", "hashed")
    monkeypatch.setenv("WORKER_LOG_HASH_KEY", SECRET)
    monkeypatch.setenv("WORKFLOW_BATCH_SIZE", "77")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    lines = dict(line.split("=", 1) for line in out.strip().splitlines())
    for secret in ("DATABASE_URL", "BROKER_SASL_PASSWORD", "RESONATE_PASSWORD", "WORKER_LOG_HASH_KEY"):
        assert lines[secret] == "***"
    assert lines["WORKFLOW_BATCH_SIZE"] == "77"
    assert lines["BROKER_SASL_USERNAME"] == "svc"
    assert lines["RESONATE_POLL_URL"] == ""
    assert len(lines) == len(effective_settings(load_settings()))


def test_secrets_from_file_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql+psycopg://app:{SECRET}@db:5432/app"
    (tmp_path / "db").write_text(url + "\n")
    (tmp_path / "sasl").write_text(SECRET)
    (tmp_path / "resonate").write_text(SECRET + "\n")
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "db"))
    monkeypatch.setenv("BROKER_SASL_PASSWORD_FILE", str(tmp_path / "sasl"))
    monkeypatch.setenv("BROKER_SASL_USERNAME", "svc")
    monkeypatch.setenv("BROKER_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("RESONATE_USERNAME", "svc")
    monkeypatch.setenv("RESONATE_PASSWORD_FILE", str(tmp_path / "resonate"))
    s = load_settings()
    assert s.database.url_value == url
    assert s.broker.sasl_password is not None
    assert s.broker.sasl_password.get_secret_value() == SECRET
    assert s.resonate.auth == ("svc", SECRET)


def test_secrets_from_a_secrets_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql+psycopg://app:{SECRET}@db:5432/app"
    (tmp_path / "DATABASE_URL").write_text(url + "\n")
    (tmp_path / "resonate_password").write_text(SECRET)
    (tmp_path / "unrelated").write_text("ignored")
    monkeypatch.setenv("RECORD_DELETER_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("RESONATE_USERNAME", "svc")
    s = load_settings()
    assert s.database.url_value == url
    assert s.resonate.auth == ("svc", SECRET)
    monkeypatch.setenv("DATABASE_URL", "memory")  # the environment wins over the directory
    assert load_settings().database.url_value == "memory"


@pytest.mark.parametrize("variable", ["DATABASE_URL", "BROKER_SASL_PASSWORD", "RESONATE_PASSWORD"])
def test_a_missing_secret_file_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str
) -> None:
    monkeypatch.setenv(f"{variable}_FILE", str(tmp_path / "nope"))
    err = _one_line_exit_2(["config", "show"], capsys)
    assert f"{variable}_FILE" in err
    assert "nope" in err


def test_an_unreadable_secret_file_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path))  # a directory: cannot be read as a file
    err = _one_line_exit_2(["config", "show"], capsys)
    assert "DATABASE_URL_FILE" in err


def test_a_missing_secrets_directory_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECORD_DELETER_SECRETS_DIR", str(tmp_path / "nope"))
    err = _one_line_exit_2(["config", "show"], capsys)
    assert "RECORD_DELETER_SECRETS_DIR" in err


def test_a_variable_and_its_file_both_set_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pw").write_text(SECRET)
    monkeypatch.setenv("RESONATE_PASSWORD", SECRET)
    monkeypatch.setenv("RESONATE_PASSWORD_FILE", str(tmp_path / "pw"))
    err = _one_line_exit_2(["config", "show"], capsys)
    assert "RESONATE_PASSWORD and RESONATE_PASSWORD_FILE are both set" in err


def test_file_variables_are_not_reported_as_typos() -> None:
    from record_deleter.entrypoints.settings import unknown_variables

    assert unknown_variables({"DATABASE_URL_FILE": "x", "WORKER_LOG_HASH_KEY_FILE": "y"}) == []


@pytest.mark.parametrize(
    "url",
    [f"http://svc:{SECRET}@127.0.0.1:8001", f"https://svc:{SECRET}@proxy.example/resonate", "http://svc@h:1"],
)
@pytest.mark.parametrize("variable", ["RESONATE_URL", "RESONATE_POLL_URL"])
def test_credentials_in_a_resonate_url_are_refused_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, variable: str
) -> None:
    monkeypatch.setenv(variable, url)
    err = _one_line_exit_2(["config", "show"], capsys)
    assert variable in err
    assert "RESONATE_USERNAME" in err


@pytest.mark.parametrize(
    ("env", "store", "poll"),
    [
        ({}, "http://127.0.0.1:8001", "http://127.0.0.1:8002"),
        (
            {"RESONATE_URL": "http://10.0.0.5:9001/", "RESONATE_MESSAGE_SOURCE_PORT": "9002"},
            "http://10.0.0.5:9001",
            "http://10.0.0.5:9002",
        ),
        (
            {"RESONATE_URL": "https://proxy.example/resonate"},
            "https://proxy.example/resonate",
            "https://proxy.example:8002",
        ),
        (
            {
                "RESONATE_URL": "https://proxy.example/resonate",
                "RESONATE_POLL_URL": "https://proxy.example/poll",
            },
            "https://proxy.example/resonate",
            "https://proxy.example/poll",
        ),
        ({"RESONATE_URL": "http://[::1]:8001"}, "http://[::1]:8001", "http://[::1]:8002"),
    ],
)
def test_store_and_poll_urls(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], store: str, poll: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    r = load_settings().resonate
    assert (r.store_url, r.effective_poll_url) == (store, poll)


def test_the_sdk_reaches_a_server_on_a_path() -> None:
    """The SDK joins host and port as f"{host}:{port}" and appends its paths: the path rides on
    the port, and today's settings give today's pair."""
    from record_deleter.adapters.resonate_runtime import sdk_host_and_port

    assert sdk_host_and_port("http://127.0.0.1:8001") == ("http://127.0.0.1", "8001")
    assert sdk_host_and_port("https://proxy.example/resonate") == ("https://proxy.example", "443/resonate")
    assert sdk_host_and_port("http://[::1]:8002/p/") == ("http://[::1]", "8002/p")


def test_hashed_record_ids_need_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WORKER_LOG_RECORD_IDS", "hashed")
    err = _one_line_exit_2(["config", "show"], capsys)
    assert "WORKER_LOG_HASH_KEY" in err
    monkeypatch.setenv("WORKER_LOG_HASH_KEY", SECRET)
    assert load_settings().worker.hash_key == SECRET.encode()


def test_hashed_record_ids_in_event_lines(caplog: pytest.LogCaptureFixture) -> None:
    """WORKER_LOG_RECORD_IDS=hashed: every event line carries the id's keyed digest, the same on
    every line, and never the id (nor a value a poison message's reason quotes)."""
    import logging

    from record_deleter.adapters.observability import LoggingEvents, hash_record_id

    rid = "ada.lovelace@example.com"
    digest = hash_record_id(b"k", rid)
    assert len(digest) == 16
    assert digest != hash_record_id(b"other key", rid)
    for json_lines in (False, True):
        events = LoggingEvents(json_lines=json_lines, hash_key=b"k")
        with caplog.at_level(logging.DEBUG, logger="record_deleter.events"):
            events.emit("handed_off", record_id=rid, partition=0, offset=1)
            events.emit("store_error", record_id=rid, attempt=1, error=f"lock timeout deleting {rid}")
            events.emit(
                "dead_lettered", partition=0, offset=2, reason="record id must be a JSON string, got int 4711"
            )
        if json_lines:  # the fields travel as the record's attributes, for the JSON formatter
            shown = ("event", "record_id", "error", "reason", "partition", "offset", "attempt")
            text = " ".join(str({k: getattr(r, k) for k in shown if hasattr(r, k)}) for r in caplog.records)
        else:
            text = caplog.text
        assert rid not in text
        assert "4711" not in text
        assert text.count(digest) == 3
        caplog.clear()
    clear = LoggingEvents()
    with caplog.at_level(logging.INFO, logger="record_deleter.events"):
        clear.emit("handed_off", record_id=rid, partition=0, offset=1)
    assert rid in caplog.text


def test_the_store_and_the_poller_reach_a_server_behind_a_proxy_on_a_path() -> None:
    """RESONATE_URL / RESONATE_POLL_URL with a path: the SDK's requests go under that path, with
    the credentials of RESONATE_USERNAME/RESONATE_PASSWORD as basic auth (never in a URL)."""
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from resonate.message_sources import Poller

    from record_deleter.adapters.resonate_runtime import probe_server, sdk_host_and_port
    from record_deleter.adapters.resonate_sdk_patches import KeepAliveRemoteStore

    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization", "")))
            body = json.dumps(
                {"id": "x", "state": "PENDING", "timeout": 9, "param": {}, "value": {}, "createdOn": 1}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    auth = ("svc", SECRET)
    try:
        store = KeepAliveRemoteStore(*sdk_host_and_port(f"{base}/resonate/"), auth=auth)
        store.promises.get("x")
        assert probe_server(f"{base}/resonate", auth) is None
        poller = Poller("workers", "me", *sdk_host_and_port(f"{base}/poll"), auth=auth)
        assert poller.url == f"{base}/poll/workers/me"
    finally:
        server.shutdown()
    token = "Basic " + base64.b64encode(f"svc:{SECRET}".encode()).decode()
    assert seen == [("/resonate/promises/x", token), ("/resonate/promises/record-deleter-probe", token)]


def test_every_secret_field_is_a_secret_value() -> None:
    """A setting listed as secret, or named like one, is a SecretStr (masked in reprs), and every
    SecretStr is listed: a field added later (a TLS key password) cannot slip through."""
    import typing

    from pydantic import SecretStr

    from record_deleter.entrypoints.settings import _CONCERNS, SECRET_SETTINGS, env_name, is_secret

    found = set()
    for model in _CONCERNS.values():
        for field, info in model.model_fields.items():
            secret_type = SecretStr in typing.get_args(info.annotation) or info.annotation is SecretStr
            if secret_type:
                found.add(env_name(model, field))
            if is_secret(env_name(model, field)) and "LOCATION" not in env_name(model, field):
                assert secret_type, f"{env_name(model, field)} is named like a secret but is not a SecretStr"
    assert found == SECRET_SETTINGS


@pytest.mark.parametrize("argv", [["check"], ["status", "ada@example.com"], ["list"], ["worker"]])
def test_commands_on_an_unreachable_database_never_show_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """Connection errors name the database (password masked), never the password."""
    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://app:{SECRET}@127.0.0.1:1/app?connect_timeout=2")
    monkeypatch.setenv("BROKER_KIND", "memory")
    monkeypatch.setenv("RESONATE_MODE", "local")
    code = main(argv)
    out = capsys.readouterr()
    assert code != 0
    assert SECRET not in out.out + out.err
