"""PostgreSQL over verified TLS with a password, and the store's statement/lock timeouts.

`scripts/services.sh up` runs PostgreSQL with `ssl = on` and a certificate for 127.0.0.1/localhost
signed by its CA (SERVICES_POSTGRES_CA), and a role that may log in over TLS only
(SERVICES_POSTGRES_TLS_URL, `?sslmode=verify-full&sslrootcert=...`)."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from record_deleter.adapters.sql_engine import make_engine
from record_deleter.adapters.sql_store import SqlRecordStore
from record_deleter.domain.errors import RecordStoreUnavailable
from record_deleter.domain.model import RecordId, RequestRef
from record_deleter.entrypoints.bootstrap import bootstrap
from record_deleter.entrypoints.cli import main
from record_deleter.entrypoints.containers import AdminContainer
from record_deleter.entrypoints.settings import load_settings
from tests import builders
from tests.harness import database, postgres_url, unique
from tests.harness.endpoints import endpoint

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_url() -> str:
    return endpoint("SERVICES_POSTGRES_TLS_URL", "PostgreSQL's TLS-only role (scripts/services.sh up)")


def _with(url: str, **query: str) -> str:
    u = make_url(url)
    return u.update_query_dict(query).render_as_string(hide_password=False)


def _connect(url: str) -> tuple[bool, str]:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            ssl = conn.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).scalar()
            user = conn.execute(text("SELECT current_user")).scalar()
            return bool(ssl), str(user)
    finally:
        engine.dispose()


def test_verify_full_connects_over_tls(tls_url: str) -> None:
    assert "sslmode=verify-full" in tls_url
    assert "sslrootcert=" in tls_url
    assert _connect(tls_url) == (True, "record_deleter_tls")


def test_the_cli_runs_on_a_verify_full_url(tls_url: str, monkeypatch, capsys) -> None:
    database.prepare(postgres_url())
    for key, value in {"DATABASE_URL": tls_url, "BROKER_KIND": "memory", "RESONATE_MODE": "local"}.items():
        monkeypatch.setenv(key, value)
    assert main(["list"]) == 0, capsys.readouterr().err


def test_a_certificate_from_another_ca_is_refused(tls_url: str, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other CA",
            "-keyout",
            str(tmp_path / "other-ca.key"),
            "-out",
            str(other),
        ],
        check=True,
        capture_output=True,
    )
    with pytest.raises(OperationalError, match="certificate verify failed"):
        _connect(_with(tls_url, sslrootcert=str(other)))


def test_a_wrong_password_is_refused(tls_url: str) -> None:
    wrong = make_url(tls_url).set(password="not-the-password").render_as_string(hide_password=False)
    with pytest.raises(OperationalError, match="password authentication failed"):
        _connect(wrong)


def test_the_tls_role_cannot_connect_without_tls(tls_url: str) -> None:
    with pytest.raises(OperationalError, match="no encryption"):
        _connect(_with(tls_url, sslmode="disable"))


# ----------------------------------------------------------------------------- timeouts
def test_timeouts_reach_every_connection_of_the_store(monkeypatch) -> None:
    for key, value in {
        "DATABASE_URL": postgres_url(),
        "DATABASE_STATEMENT_TIMEOUT_SECONDS": "7",
        "DATABASE_LOCK_TIMEOUT_SECONDS": "1.5",
        "BROKER_KIND": "memory",
        "RESONATE_MODE": "local",
    }.items():
        monkeypatch.setenv(key, value)
    container = bootstrap(AdminContainer, load_settings())
    try:
        with container.database.engine().connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "7s"
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "1500ms"
    finally:
        container.shutdown_resources()


def test_a_row_lock_held_elsewhere_makes_the_delete_step_transient_not_hang() -> None:
    url = postgres_url()
    database.prepare(url)
    plain = builders.engine(url, pool_size=2)
    store = SqlRecordStore(
        make_engine(url, pool_size=2, statement_timeout=30, lock_timeout=0.5), builders.demo_plan()
    )
    rid = RecordId(unique("locked"))
    database.seed(plain, {rid.value: 5})
    ref = RequestRef("records_to_be_deleted", 0, 1, 1)
    attempt = store.join_attempt(rid, ref, ref.key(unique("it"))).number
    holding, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        with plain.begin() as conn:
            conn.execute(
                text("SELECT 1 FROM record_rows WHERE record_id = :id FOR UPDATE"), {"id": rid.value}
            )
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        with pytest.raises(RecordStoreUnavailable, match="55P03") as info:
            store.delete_batch(rid, 10, attempt)
        assert time.monotonic() - started < 5, "the lock timeout, not a hang"
        assert "lock timeout" in str(info.value)
    finally:
        release.set()
        holder.join(30)
    result = store.delete_batch(rid, 10, attempt)  # the retry, once the lock is gone
    assert result.deleted == 6
    assert not result.more
    plain.dispose()
