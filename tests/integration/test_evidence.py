"""`record-deleter evidence` and `audit prune` on real databases (SQLite and PostgreSQL): what the
ledger shows about a record's deletion, and that an edited, removed or missing audit row is named.

The deletions are made with the store itself (as the workflow's steps call it); the evidence is
read through the CLI, as an operator reads it.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, text, update

from record_deleter.adapters.evidence_chain import AuditIdentity, ledger_id
from record_deleter.adapters.observability import hash_record_id
from record_deleter.adapters.sql_schema import deletion_attempts
from record_deleter.adapters.sql_store import SqlRecordStore
from record_deleter.domain.evidence import Delivery
from record_deleter.domain.model import Answer, AttemptTotals, RecordId, RequestRef
from record_deleter.entrypoints.cli import main
from tests import builders
from tests.conftest import service_endpoint
from tests.harness import scratch_database

SQLITE = pytest.param("sqlite", marks=pytest.mark.unit)
POSTGRES = pytest.param("postgres", marks=pytest.mark.integration)
KEY = "a log hash key"


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """`main` points the root logger at this test's captured stderr: put the handlers back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture(params=[SQLITE, POSTGRES])
def db_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    postgres = service_endpoint("DATABASE_URL", "PostgreSQL") if request.param == "postgres" else None
    for key in list(os.environ):
        if key.startswith(("BROKER_", "DATABASE_", "RESONATE_", "WORKFLOW_", "WORKER_", "AUDIT_")):
            monkeypatch.delenv(key)
    with scratch_database(request.param, postgres) as url:
        monkeypatch.setenv("DATABASE_URL", url)
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = builders.engine(db_url)
    yield e
    e.dispose()


def store(engine: Engine, **identity: Any) -> SqlRecordStore:
    return builders.sql_store(engine, identity=AuditIdentity(**{"worker": "worker-a", **identity}))


def ref(offset: int) -> RequestRef:
    return RequestRef("records_to_be_deleted", 2, offset, 1_700_000_000_000 + offset)


def delete_record(s: SqlRecordStore, rid: RecordId, offset: int, batch_size: int = 4) -> int:
    """One request's whole deletion, as the workflow runs it, and its answer recorded at `offset`
    of partition 1 of the completion topic; returns the attempt."""
    request = ref(offset)
    key = request.key("evidence")
    attempt = s.join_attempt(rid, request, key).number
    while True:
        result = s.delete_batch(rid, batch_size, attempt)
        if not result.more:
            break
    totals = result.totals or AttemptTotals(0, 0)
    s.record_answer(Answer(rid, request, attempt, totals, key), Delivery("done", 1, 100 + offset))
    return attempt


def evidence(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["evidence", *args, "--format", "json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.startswith("{") else {"text": out}


def audit_ids(engine: Engine, stored_id: str) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("select id from deletion_audit where record_id = :r order by id"), {"r": stored_id}
            ).scalars()
        )


def new_id() -> RecordId:
    return RecordId(f"ev-{uuid.uuid4().hex[:12]}")


def test_a_deleted_record_shows_its_request_every_batch_final_counts_answer_and_an_intact_chain(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    s, rid = store(engine), new_id()
    s.add_record(rid, 10)  # 10 record_rows + 1 records row
    delete_record(s, rid, offset=7)

    code, report = evidence(capsys, rid.value)

    assert code == 0
    [request] = report["requests"]
    assert (request["topic"], request["partition"], request["offset"]) == ("records_to_be_deleted", 2, 7)
    [attempt] = report["attempts"]
    assert attempt["state"] == "done"
    assert attempt["plan"] == "record_rows:record_id:id,records:id:id"
    batches = attempt["batch_rows"]
    assert [b["rows_deleted"] for b in batches] == [4, 4, 3]
    assert [b["tables"] for b in batches] == [
        {"record_rows": 4, "records": 0},
        {"record_rows": 4, "records": 0},
        {"record_rows": 2, "records": 1},
    ]
    assert {b["worker"] for b in batches} == {"worker-a"}
    assert attempt["final_counts"] == {"record_rows": 0, "records": 0}
    assert attempt["audit_head"] == batches[-1]["chain_hash"]
    [answer] = attempt["answers"]
    assert (answer["outcome"], answer["topic"], answer["partition"], answer["offset"]) == (
        "deleted",
        "done",
        1,
        107,
    )
    assert report["chain"]["intact"] is True
    assert report["chain"]["summary"] == "chain intact (3 batches)"


def test_an_edited_audit_row_breaks_the_chain_at_that_row(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    s, rid = store(engine), new_id()
    s.add_record(rid, 10)
    delete_record(s, rid, offset=1)
    middle = audit_ids(engine, rid.value)[1]
    with engine.begin() as conn:
        conn.execute(text("update deletion_audit set rows_deleted = 40 where id = :i"), {"i": middle})

    code, report = evidence(capsys, rid.value)

    assert code == 1
    assert report["chain"]["intact"] is False
    assert report["chain"]["problems"][0].startswith(f"row {middle}: hash does not match its content")
    assert "attempt 1 closed with 11 rows deleted, its batches add up to 47" in report["chain"]["problems"]


def test_a_removed_middle_row_is_named_by_the_row_after_it_and_the_batch_count(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    s, rid = store(engine), new_id()
    s.add_record(rid, 10)
    delete_record(s, rid, offset=1)
    first, middle, last = audit_ids(engine, rid.value)
    with engine.begin() as conn:
        conn.execute(text("delete from deletion_audit where id = :i"), {"i": middle})

    code, report = evidence(capsys, rid.value)

    assert code == 1
    problems = report["chain"]["problems"]
    assert problems[0].startswith(
        f"row {last}: hash does not match its content (edited) or its link to row {first}"
    )
    assert "attempt 1 closed with 3 batches, 2 found" in problems


def test_a_removed_last_row_is_caught_by_the_attempts_audit_head(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    s, rid = store(engine), new_id()
    s.add_record(rid, 10)
    delete_record(s, rid, offset=1)
    last = audit_ids(engine, rid.value)[-1]
    with engine.begin() as conn:
        conn.execute(text("delete from deletion_audit where id = :i"), {"i": last})

    code, report = evidence(capsys, rid.value)

    assert code == 1
    problems = report["chain"]["problems"]
    assert "attempt 1 closed with 3 batches, 2 found" in problems
    assert any(p.startswith("attempt 1 closed with audit head") for p in problems)


def test_a_record_requested_twice_shows_both_attempts_each_batch_once_and_one_chain(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    s, rid = store(engine), new_id()
    s.add_record(rid, 6)
    assert delete_record(s, rid, offset=1) == 1
    s.add_record(rid, 3)  # the application wrote about the record again
    assert delete_record(s, rid, offset=2) == 2

    code, report = evidence(capsys, rid.value)

    assert code == 0, report["chain"]
    assert [(r["offset"], r["attempt"]) for r in report["requests"]] == [(1, 1), (2, 2)]
    attempts = report["attempts"]
    assert [sum(b["rows_deleted"] for b in a["batch_rows"]) for a in attempts] == [7, 4]
    rows = [b["row"] for a in attempts for b in a["batch_rows"]]
    assert len(rows) == len(set(rows)) == 3
    assert [a["final_counts"] for a in attempts] == [{"record_rows": 0, "records": 0}] * 2
    assert report["chain"]["summary"] == "chain intact (3 batches)"


def test_a_step_re_run_after_a_crash_by_a_fresh_store_keeps_every_batch_once_and_the_chain_intact(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = new_id()
    first = store(engine, worker="worker-a")
    first.add_record(rid, 20)
    request = ref(5)
    attempt = first.join_attempt(rid, request, request.key("evidence")).number
    for _ in range(2):  # two batches committed, then the worker "crashed" before the checkpoint
        first.delete_batch(rid, 4, attempt)
    second = store(builders.engine(str(engine.url.render_as_string(hide_password=False))), worker="worker-b")
    while second.delete_batch(rid, 4, attempt).more:  # the step re-runs on another worker
        pass

    code, report = evidence(capsys, rid.value)

    assert code == 0, report["chain"]
    [a] = report["attempts"]
    assert sum(b["rows_deleted"] for b in a["batch_rows"]) == 21
    assert [b["worker"] for b in a["batch_rows"]] == ["worker-a"] * 2 + ["worker-b"] * 4
    assert a["batches"] == 6
    assert report["chain"]["summary"] == "chain intact (6 batches)"


def test_hashed_ledger_ids_keep_the_id_out_of_the_ledger_and_evidence_takes_every_form(
    engine: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, rid = store(engine, ledger_key=KEY.encode()), RecordId(f"ada-{uuid.uuid4().hex[:8]}@example.com")
    s.add_record(rid, 5)
    delete_record(s, rid, offset=3)
    monkeypatch.setenv("AUDIT_RECORD_IDS", "hashed")
    monkeypatch.setenv("WORKER_LOG_HASH_KEY", KEY)

    with engine.connect() as conn:
        for table in ("deletion_attempts", "deletion_requests", "deletion_audit", "deletion_answers"):
            ids = set(conn.execute(text(f"select record_id from {table}")).scalars())
            assert ids == {ledger_id(KEY.encode(), rid.value)}, table
    full, short = ledger_id(KEY.encode(), rid.value), hash_record_id(KEY.encode(), rid.value)
    assert full.startswith(short), "a log line's hash is the start of the ledger's"
    for given in (rid.value, full, short):
        code, report = evidence(capsys, given)
        assert (code, report["record_id"]) == (0, full), given
        assert report["chain"]["summary"] == "chain intact (2 batches)"
    assert main(["status", rid.value]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "done"


def test_a_keyed_chain_verifies_only_with_its_key(
    engine: Engine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    s, rid = store(engine, chain_key=b"chain secret"), new_id()
    s.add_record(rid, 5)
    delete_record(s, rid, offset=3)

    monkeypatch.setenv("AUDIT_CHAIN_KEY", "chain secret")
    assert evidence(capsys, rid.value)[0] == 0
    monkeypatch.setenv("AUDIT_CHAIN_KEY", "another key")
    assert evidence(capsys, rid.value)[0] == 1


def test_a_record_never_requested_is_one_line_and_a_bad_id_exits_2(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evidence", "nobody"]) == 4
    assert (
        capsys.readouterr().out.strip()
        == "record-deleter: record 'nobody' was never requested (nothing in the ledger)"
    )
    assert main(["evidence", "bad\nid"]) == 2


def test_rows_from_before_the_evidence_schema_are_reported_as_not_chained(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    s, rid = store(engine), new_id()
    s.add_record(rid, 5)
    delete_record(s, rid, offset=1)
    with engine.begin() as conn:  # an older attempt's row, as rd0002 wrote them
        conn.execute(
            text(
                "insert into deletion_attempts (record_id, attempt, state, opened_by, rows_deleted, batches) "
                "values (:r, 0, 'done', 'old', 2, 1)"
            ),
            {"r": rid.value},
        )
        conn.execute(
            text("insert into deletion_audit (id, record_id, rows_deleted, attempt) values (0, :r, 2, 0)"),
            {"r": rid.value},
        )

    code, report = evidence(capsys, rid.value)

    assert code == 0, report["chain"]
    assert report["chain"]["summary"] == (
        "chain intact (2 batches); 1 not chained (written before the evidence schema)"
    )


def _finished(engine: Engine, rid: RecordId, days_ago: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                f"update deletion_attempts set finished_at = finished_at - interval '{days_ago} days', "
                f"started_at = started_at - interval '{days_ago} days' where record_id = :r"
            )
            if engine.dialect.name == "postgresql"
            else text(
                f"update deletion_attempts set finished_at = datetime(finished_at, '-{days_ago} days'), "
                f"started_at = datetime(started_at, '-{days_ago} days') where record_id = :r"
            ),
            {"r": rid.value},
        )


def test_prune_removes_old_closed_attempts_with_their_rows_and_keeps_running_and_recent_ones(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    s = store(engine)
    old, recent, running = new_id(), new_id(), new_id()
    for rid in (old, recent, running):
        s.add_record(rid, 5)
    delete_record(s, old, offset=1)
    delete_record(s, recent, offset=2)
    s.join_attempt(running, ref(3), ref(3).key("evidence"))
    s.delete_batch(running, 2, 1)
    _finished(engine, old, 100)
    _finished(engine, running, 100)  # started long ago, still running

    assert main(["audit", "prune", "--older-than", "30", "--dry-run"]) == 0
    assert "would remove 1 attempts" in capsys.readouterr().out
    assert s.history(old) is not None, "a dry run removes nothing"

    assert main(["audit", "prune", "--older-than", "30"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 attempts" in out
    assert "2 batches, 1 requests, 1 answers" in out
    assert s.history(old) is None
    assert audit_ids(engine, old.value) == []
    assert s.history(recent) is not None
    running_history = s.history(running)
    assert running_history is not None
    assert running_history.attempts[0].state == "running"


def test_a_record_whose_first_attempt_was_pruned_still_verifies_from_what_remains(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    s, rid = store(engine), new_id()
    s.add_record(rid, 5)
    delete_record(s, rid, offset=1)
    with engine.begin() as conn:  # attempt 1 finished long ago
        a = deletion_attempts.c
        conn.execute(
            update(deletion_attempts)
            .where(a.record_id == rid.value, a.attempt == 1)
            .values(finished_at=datetime(2000, 1, 1, tzinfo=UTC))
        )
    s.add_record(rid, 5)
    delete_record(s, rid, offset=2)
    assert main(["audit", "prune", "--older-than", "30"]) == 0

    code, report = evidence(capsys, rid.value)

    assert code == 0, report["chain"]
    assert [a["attempt"] for a in report["attempts"]] == [2]
    assert "removed by `audit prune`" in report["chain"]["notes"][0]


def test_the_markdown_report_says_the_same_in_words(
    engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    s, rid = store(engine), new_id()
    s.add_record(rid, 10)
    delete_record(s, rid, offset=7)
    capsys.readouterr()

    assert main(["evidence", rid.value]) == 0
    out = capsys.readouterr().out
    assert "| records_to_be_deleted | 2 | 7 |" in out
    assert "- final counts: record_rows: 0, records: 0" in out
    assert "- answer (deleted): done partition 1 offset 107" in out
    assert out.rstrip().endswith("chain intact (3 batches)")

    first = audit_ids(engine, rid.value)[0]
    with engine.begin() as conn:
        conn.execute(text("update deletion_audit set worker = 'someone else' where id = :i"), {"i": first})
    assert main(["evidence", rid.value]) == 1
    assert f"chain broken: row {first}: hash does not match its content" in capsys.readouterr().out
