"""Secrets and personal data, end to end: a real worker process with known, distinctive passwords
(a PostgreSQL role of its own, a SASL password, a Resonate basic-auth password the shared server
ignores, the log-hash key) processes records — one completes after a transient error, one fails
on a trigger quoting row values, one poison message — and then every log line, every message on
the completion/failure/dead-letter topics, the outputs of `status`, `list`, `check` and `config
show` and the metrics page are scanned: no secret anywhere, and no record id in clear in the
worker's log (WORKER_LOG_RECORD_IDS=hashed).

The secrets reach the worker the ways a container platform mounts them: DATABASE_URL from
RECORD_DELETER_SECRETS_DIR, RESONATE_PASSWORD from RESONATE_PASSWORD_FILE, the rest as variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from record_deleter.adapters.observability import hash_record_id
from tests.conftest import wait_for
from tests.harness import (
    ROOT,
    Topics,
    cli_env,
    free_port,
    kafka_bootstrap,
    postgres_url,
    produce,
    read_topic,
    resonate_endpoint,
    unique,
    worker_process,
)
from tests.harness import database as db

pytestmark = pytest.mark.system

TAG = uuid.uuid4().hex[:8]
DB_PASSWORD = f"PgPw-{TAG}-x7Q"
SASL_PASSWORD = f"SaslPw-{TAG}-k2M"
RESONATE_PASSWORD = f"RsPw-{TAG}-v9Z"
HASH_KEY = f"HashKey-{TAG}-p4W"
SECRETS = [DB_PASSWORD, SASL_PASSWORD, RESONATE_PASSWORD, HASH_KEY]

DONE = f"ada.{TAG}@example.com"
FLAKY = f"grace.{TAG}@example.com"  # a transient error first (the SDK's retry line), then done
HELD = f"alan.{TAG}@example.com"  # a trigger refuses, quoting row values: the attempt fails
ROW_VALUE = f"ssn-{TAG}-078051120"
RECORDS = (DONE, FLAKY, HELD)


@dataclass
class Site:
    env: dict[str, str]
    engine: Engine
    bootstrap: str
    topics: Topics
    metrics_port: int

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "record_deleter", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
        )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A database owned by a role of its own with a known password, fresh topics, and the
    secrets in files as a container platform mounts them."""
    server = make_url(postgres_url())
    role, name = f"rd_secret_{TAG}", f"secrets_{TAG}"
    superuser = db.superuser_url()
    admin = create_engine(superuser or server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if superuser:  # a role of its own, with this test's password
            conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{DB_PASSWORD}'"))
            conn.execute(text(f'CREATE DATABASE "{name}" OWNER {role}'))
            url = server.set(username=role, password=DB_PASSWORD, database=name)
        else:  # your own PostgreSQL: its role's password is the one that must not leak
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            url = server.set(database=name)
            SECRETS[0] = server.password or DB_PASSWORD
    url_text = url.render_as_string(hide_password=False)
    engine = create_engine(url_text)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "DATABASE_URL").write_text(url_text + "\n")
    # The shared services' own credentials where they require them (a SASL_SSL listener, a
    # Resonate server behind basic auth): those are the secrets the worker holds, and must not leak.
    sasl_bootstrap = os.environ.get("SERVICES_KAFKA_SASL_BOOTSTRAP")
    if sasl_bootstrap:
        SECRETS[1] = os.environ["SERVICES_KAFKA_SASL_PASSWORD"]
    if os.environ.get("RESONATE_PASSWORD"):
        SECRETS[2] = os.environ["RESONATE_PASSWORD"]
    resonate_user = os.environ.get("RESONATE_USERNAME", "svc-record-deleter")
    (tmp_path / "resonate-password").write_text(SECRETS[2] + "\n")
    bootstrap = kafka_bootstrap()
    resonate_url, poll_port = resonate_endpoint()
    topics = Topics.fresh("secrets").create(bootstrap, 1)
    metrics_port = free_port()
    env = cli_env(
        RECORD_DELETER_SECRETS_DIR=str(secrets),
        BROKER_KIND="kafka",
        BROKER_BOOTSTRAP_SERVERS=sasl_bootstrap or bootstrap,
        BROKER_GROUP=unique("secrets-workers"),
        **(
            {
                "BROKER_SECURITY_PROTOCOL": "SASL_SSL",
                "BROKER_SASL_MECHANISM": "SCRAM-SHA-256",
                "BROKER_SASL_USERNAME": os.environ["SERVICES_KAFKA_SASL_USERNAME"],
                "BROKER_SASL_PASSWORD": SECRETS[1],
                "BROKER_SSL_CA_LOCATION": os.environ["SERVICES_KAFKA_CA"],
            }
            if sasl_bootstrap
            else {}
        ),
        RESONATE_MODE="remote",
        RESONATE_URL=resonate_url,
        RESONATE_MESSAGE_SOURCE_PORT=poll_port,
        RESONATE_GROUP=unique("secrets-rg"),
        RESONATE_TTL="2",
        RESONATE_USERNAME=resonate_user,
        RESONATE_PASSWORD_FILE=str(tmp_path / "resonate-password"),
        WORKFLOW_BATCH_SIZE="10",
        WORKFLOW_STEP_RETRY_DELAY="0.2",
        WORKFLOW_STEP_RETRY_MAX_DELAY="1",
        WORKER_METRICS_PORT=str(metrics_port),
        WORKER_LOG_LEVEL="DEBUG",
        WORKER_LOG_RECORD_IDS="hashed",
        WORKER_LOG_HASH_KEY=HASH_KEY,
        **topics.env(),
    )
    env.pop("DATABASE_URL", None)
    env.pop("RESONATE_PASSWORD", None)  # it comes from RESONATE_PASSWORD_FILE here
    try:
        yield Site(env, engine, bootstrap, topics, metrics_port)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            if superuser:
                conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def _prepare(site: Site) -> None:
    upgraded = site.cli("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr[-2000:]
    db.prepare(site.engine.url.render_as_string(hide_password=False))
    db.seed(site.engine, {DONE: 25, FLAKY: 12, HELD: 7})
    with site.engine.begin() as conn:
        conn.execute(text("CREATE SEQUENCE flaky_once"))
        conn.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                f"IF OLD.record_id = '{HELD}' THEN "
                f"RAISE EXCEPTION 'row % of % is under legal hold: {ROW_VALUE}', OLD.id, OLD.record_id "
                f"USING ERRCODE = '23514', DETAIL = 'Key (payload)=({ROW_VALUE})'; END IF; "
                f"IF OLD.record_id = '{FLAKY}' AND nextval('flaky_once') <= 2 THEN "
                "RAISE EXCEPTION 'lock on the rows of % not available', OLD.record_id "
                "USING ERRCODE = '55P03'; END IF; RETURN OLD; END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(
            text("CREATE TRIGGER hold BEFORE DELETE ON record_rows FOR EACH ROW EXECUTE FUNCTION refuse()")
        )


def _page(port: int, path: str) -> str:
    """The body the worker's HTTP port serves at /`path`, whatever its status."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=5) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def _topic_text(site: Site, topic: str, expect: int) -> tuple[list[bytes | None], str]:
    messages = read_topic(site.bootstrap, topic, expect=expect, timeout=30, settle=1)
    parts = []
    for m in messages:
        parts += [repr(m.key), repr(m.value), repr(sorted(m.headers.items()))]
        parts += [(m.value or b"").decode(errors="replace"), (m.key or b"").decode(errors="replace")]
        parts += [v.decode(errors="replace") for v in m.headers.values()]
    return [m.value for m in messages], "\n".join(parts)


def test_no_secret_and_no_clear_record_id_leaves_the_worker(site: Site, tmp_path: Path) -> None:
    _prepare(site)
    checked = site.cli("check")
    assert checked.returncode == 0, checked.stderr[-2000:]
    values = [json.dumps(r).encode() for r in RECORDS] + [b'{"not": "a request"}']
    produce(site.bootstrap, site.topics.request, values, partition=0)
    with worker_process(site.env, tmp_path / "worker.log") as worker:

        def answered() -> bool:
            done = read_topic(site.bootstrap, site.topics.completion, expect=2, timeout=1, settle=0)
            failed = read_topic(site.bootstrap, site.topics.failure, expect=1, timeout=1, settle=0)
            return len(done) >= 2 and len(failed) >= 1

        wait_for(answered, timeout=120, interval=1, message=f"2 completions and 1 failure\n{worker.tail()}")
        # the metrics page, and whatever else the port serves (health and readiness reports)
        metrics = "\n".join(_page(site.metrics_port, path) for path in ("metrics", "healthz", "readyz"))
    log = worker.text()

    completions, done_text = _topic_text(site, site.topics.completion, 2)
    failures, failed_text = _topic_text(site, site.topics.failure, 1)
    _, dlq_text = _topic_text(site, site.topics.dead_letter, 1)
    [failure] = [json.loads(v or b"null") for v in failures]
    assert failure["record_id"] == HELD
    assert "DeletionRejected" in failure["error"]
    assert sorted(json.loads(v or b"null")[0] for v in completions) == sorted((DONE, FLAKY))

    outputs = {
        "status": site.cli("status", HELD),
        "list": site.cli("list"),
        "check": site.cli("check"),
        "config show": site.cli("config", "show"),
    }
    for command, result in outputs.items():
        assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"
    shown = dict(line.split("=", 1) for line in outputs["config show"].stdout.splitlines())
    assert shown["DATABASE_URL"] == "***"
    assert shown["RESONATE_PASSWORD"] == "***"

    scanned = {
        "worker log": log,
        "completions": done_text,
        "failures": failed_text,
        "dead letters": dlq_text,
        "metrics": metrics,
        **{command: r.stdout + r.stderr for command, r in outputs.items()},
    }
    hits = [(where, secret) for where, body in scanned.items() for secret in SECRETS if secret in body]
    assert hits == [], f"secrets found: {hits}"
    assert ROW_VALUE not in failed_text, "a row's value on the failure topic"
    assert ROW_VALUE not in outputs["status"].stdout + outputs["list"].stdout

    # personal data: the worker's log carries each record's keyed digest, never the id
    assert "record_deleter_messages_consumed" in metrics, "the metrics page was scraped"
    assert "RuntimeError. Function" in log, "the SDK's retry line (the transient error) was not written"
    assert "store_error" in log
    for record in RECORDS:
        assert record not in log, f"record id {record} in clear in the worker's log"
        assert hash_record_id(HASH_KEY.encode(), record) in log
