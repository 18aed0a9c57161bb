"""The request contract, end to end through the CLI with worker processes: real Kafka, the real
Resonate server, PostgreSQL. No record id is ever burned; every request gets its answer.

Each test works in a database of its own (created here, dropped after) and fresh topics.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from record_deleter.adapters.sql_schema import create_demo_tables
from tests.conftest import wait_for
from tests.harness import (
    ROOT,
    Topics,
    check_errors,
    evidence_report,
    kafka_bootstrap,
    postgres_url,
    produce,
    run_cli,
    topic_reader,
    worker_env,
    worker_process,
)
from tests.harness import database as db

pytestmark = pytest.mark.system


@dataclass
class Site:
    """One deployment: its own database, topics, consumer and Resonate groups."""

    env: dict[str, str]
    url: str
    engine: Engine
    bootstrap: str
    topics: dict[str, str]

    def request(self, *record_ids: str) -> list[tuple[int, int]]:
        values = [json.dumps(r).encode() for r in record_ids]
        return produce(self.bootstrap, self.topics["BROKER_REQUEST_TOPIC"], values, partition=0)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`record-deleter ARGS` whatever its exit code (the test reads it)."""
        return subprocess.run(
            [sys.executable, "-m", "record_deleter", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ROOT,
        )

    def status(self, record_id: str) -> dict[str, object]:
        return json.loads(run_cli("status", record_id, env=self.env).stdout)


@pytest.fixture
def site() -> Iterator[Site]:
    server = make_url(postgres_url())
    name = f"contract_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    bootstrap = kafka_bootstrap()
    topics = Topics.fresh("contract")
    topics.create(bootstrap, 1)
    env = worker_env(
        url,
        BROKER_BOOTSTRAP_SERVERS=bootstrap,
        RESONATE_TTL="2",
        WORKFLOW_BATCH_SIZE="10",
        WORKFLOW_STEP_RETRY_DELAY="0.2",
        WORKFLOW_STEP_RETRY_MAX_DELAY="1",
        **topics.env(),
    )
    try:
        yield Site(env, url, engine, bootstrap, topics.env())
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def answers(reader) -> list[tuple[str, int, dict[str, bytes]]]:  # type: ignore[no-untyped-def]
    out = []
    for m in reader.poll():
        value = json.loads(m.value or b"null")
        record_id = value[0] if isinstance(value, list) else value["record_id"]
        out.append((record_id, int(m.headers["request-offset"]), m.headers))
    return out


def test_a_request_before_the_schema_exists_waits_for_it_then_completes(site: Site, tmp_path: Path) -> None:
    """The worker refuses to start on a database without the project's schema (one line, exit 2),
    so the request is not taken; after `db upgrade` the same request is deleted and answered."""
    create_demo_tables(site.engine)
    db.seed(site.engine, {"early@example.com": 25})
    [(_, offset)] = site.request("early@example.com")

    refused = site.cli("worker")
    assert refused.returncode == 2, refused.stderr[-2000:]
    lines = check_errors(refused.stderr)
    assert len(lines) == 1, refused.stderr
    assert "db upgrade" in lines[0]
    assert "Traceback" not in refused.stderr

    run_cli("db", "upgrade", env=site.env)
    assert site.cli("check").returncode == 0
    with (
        topic_reader(site.bootstrap, site.topics["BROKER_COMPLETION_TOPIC"]) as done,
        worker_process(site.env, tmp_path / "worker.log"),
    ):
        wait_for(lambda: answers(done), timeout=90, message="the answer to the early request")
        final = answers(done)
    [(record_id, answered_offset, headers)] = final
    assert (record_id, answered_offset) == ("early@example.com", offset)
    assert headers["rows-deleted"] == b"26"
    assert db.rows_of(site.engine, "early@example.com") == 0


def test_a_record_requested_again_with_new_rows_is_deleted_again_and_answered_again(
    site: Site, tmp_path: Path
) -> None:
    run_cli("db", "upgrade", env=site.env)
    create_demo_tables(site.engine)
    db.seed(site.engine, {"tenant/42": 30})
    with (
        topic_reader(site.bootstrap, site.topics["BROKER_COMPLETION_TOPIC"]) as done,
        worker_process(site.env, tmp_path / "worker.log"),
    ):
        [(_, first)] = site.request("tenant/42")
        wait_for(lambda: len(answers(done)) == 1, timeout=90, message="the first answer")
        db.seed(site.engine, {"tenant/42": 7})  # the application wrote new rows under the same id
        [(_, second)] = site.request("tenant/42")
        wait_for(lambda: len(answers(done)) == 2, timeout=90, message="the second answer")
        final = answers(done)
    got = sorted((offset, h["attempt"], h["rows-deleted"]) for _, offset, h in final)
    assert got == [(first, b"1", b"31"), (second, b"2", b"8")]
    assert db.rows_of(site.engine, "tenant/42") == 0
    status = site.status("tenant/42")
    assert (status["state"], status["attempt"], status["rows_left"]) == ("done", 2, 0)
    # the evidence holds both: each request with its own attempt, batches and answer, one chain
    code, evidence = evidence_report("tenant/42", site.env)
    assert code == 0, evidence["chain"]
    assert [r["offset"] for r in evidence["requests"]] == [first, second]
    attempts = evidence["attempts"]
    assert [(a["attempt"], a["state"]) for a in attempts] == [(1, "done"), (2, "done")]
    assert [sum(b["rows_deleted"] for b in a["batch_rows"]) for a in attempts] == [31, 8]
    assert [len(a["answers"]) for a in attempts] == [1, 1]
    assert all(a["final_counts"] == {"record_rows": 0, "records": 0} for a in attempts)


def test_a_failed_record_is_retried_by_the_operator_and_completes(site: Site, tmp_path: Path) -> None:
    """A permanent error (the database refuses the delete) fails the attempt with a sanitized
    reason on the failure topic; once the cause is gone, `record-deleter retry` deletes it."""
    run_cli("db", "upgrade", env=site.env)
    create_demo_tables(site.engine)
    db.seed(site.engine, {"locked-7": 12, "free-8": 5})
    with site.engine.begin() as conn:  # the application forbids deleting locked-7's rows
        conn.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF OLD.record_id = 'locked-7' THEN "
                "RAISE EXCEPTION 'row % of % is under legal hold', OLD.id, OLD.record_id "
                "USING ERRCODE = '23514', DETAIL = 'secret detail: ' || OLD.payload; END IF; "
                "RETURN OLD; END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(
            text("CREATE TRIGGER hold BEFORE DELETE ON record_rows FOR EACH ROW EXECUTE FUNCTION refuse()")
        )
    with (
        topic_reader(site.bootstrap, site.topics["BROKER_COMPLETION_TOPIC"]) as done,
        topic_reader(site.bootstrap, site.topics["BROKER_FAILURE_TOPIC"]) as failed,
        worker_process(site.env, tmp_path / "worker.log"),
    ):
        site.request("locked-7", "free-8")
        wait_for(lambda: answers(failed) and answers(done), timeout=90, message="a failure and a completion")
        [(_, _, failure_headers)] = answers(failed)
        [failure] = [json.loads(m.value) for m in failed.poll()]
        assert failure["record_id"] == "locked-7"
        assert "DeletionRejected" in failure["error"]
        assert "secret detail" not in failure["error"], "no DETAIL text on a topic"
        assert failure_headers["attempt"] == b"1"
        assert site.status("locked-7")["state"] == "failed"
        assert site.cli("retry", "free-8").returncode == 2, "only a failed record is retried"

        with site.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER hold ON record_rows"))
        retried = site.cli("retry", "locked-7")
        assert retried.returncode == 0, retried.stderr
        wait_for(
            lambda: any(r == "locked-7" for r, _, _ in answers(done)),
            timeout=90,
            message="the retry's answer",
        )
        final = answers(done)
    [(_, _, headers)] = [a for a in final if a[0] == "locked-7"]
    assert headers["attempt"] == b"2"
    assert headers["rows-deleted"] == b"13"
    assert db.rows_of(site.engine, "locked-7") == 0
    listed = json.loads(run_cli("list", "--format", "json", env=site.env).stdout)
    assert {(r["record_id"], r["state"], r["attempt"]) for r in listed} == {
        ("locked-7", "done", 2),
        ("free-8", "done", 1),
    }
