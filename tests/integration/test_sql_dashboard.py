"""The dashboard's ledger reads on SQLite and PostgreSQL, with the rd0003 evidence columns filled
(as the evidence work will fill them) and left empty (as today's worker leaves them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert

from record_deleter.adapters import sql_dashboard as ledger
from record_deleter.adapters.dashboard_overview import (
    DashboardOverview,
    OverviewLimits,
    RowsLeftCounter,
    history_document,
)
from record_deleter.adapters.sql_schema import (
    deletion_answers,
    deletion_attempts,
    deletion_audit,
    deletion_requests,
)
from tests import builders
from tests.conftest import service_endpoint
from tests.harness import scratch_database
from tests.harness.database import seed

pytestmark = pytest.mark.integration

HASHED = "ab" * 32


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    postgres = service_endpoint("DATABASE_URL", "PostgreSQL") if request.param == "postgres" else None
    with scratch_database(request.param, postgres) as url:
        db = builders.engine(url)
        try:
            yield db
        finally:
            db.dispose()


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def attempt(db: Engine, record_id: str, n: int, state: str, started: float, **values: object) -> None:
    with db.begin() as conn:
        conn.execute(
            insert(deletion_attempts).values(
                record_id=record_id,
                attempt=n,
                state=state,
                started_at=ago(started),
                opened_by=f"req:{record_id}:{n}",
                **values,
            )
        )


def request(db: Engine, record_id: str, n: int, offset: int) -> None:
    with db.begin() as conn:
        conn.execute(
            insert(deletion_requests).values(
                request_key=f"rd:req:{record_id}:{offset}",
                record_id=record_id,
                attempt=n,
                topic="records_to_be_deleted",
                partition=1,
                offset=offset,
                headers="{}",
            )
        )


def batch(db: Engine, record_id: str, n: int, rows: int, at: float, worker: str | None = None) -> None:
    evidence = {"tables": json.dumps({"record_rows": rows}), "chain_hash": "c" * 64} if worker else {}
    with db.begin() as conn:
        conn.execute(
            insert(deletion_audit).values(
                record_id=record_id,
                attempt=n,
                rows_deleted=rows,
                deleted_at=ago(at),
                worker=worker,
                **evidence,
            )
        )


def answer(db: Engine, record_id: str, n: int, offset: int, outcome: str = "deleted") -> None:
    with db.begin() as conn:
        conn.execute(
            insert(deletion_answers).values(
                request_key=f"rd:req:{record_id}:{offset}",
                record_id=record_id,
                attempt=n,
                outcome=outcome,
                topic="records_that_were_deleted",
                partition=0,
                offset=offset + 1000,
                worker="worker-b",
            )
        )


def test_in_flight_totals_the_audit_and_names_the_worker_of_the_latest_batch(engine) -> None:
    seed(engine, {"big": 30})
    attempt(engine, "big", 1, "running", started=120)
    batch(engine, "big", 1, 10, at=60, worker="worker-a")
    batch(engine, "big", 1, 10, at=1, worker="worker-b")
    attempt(engine, "fresh", 1, "running", started=5)  # no batch yet, evidence columns empty
    with engine.connect() as conn:
        rows = ledger.in_flight(conn, limit=10)
        count, oldest = ledger.in_flight_summary(conn)
    assert [r.record_id for r in rows] == ["big", "fresh"]  # oldest first
    big, fresh = rows
    assert (big.attempt, big.rows_deleted, big.batches, big.worker) == (1, 20, 2, "worker-b")
    assert big.last_batch_at is not None
    assert abs((datetime.now(UTC) - big.last_batch_at).total_seconds() - 1) < 5
    assert (fresh.rows_deleted, fresh.batches, fresh.worker, fresh.last_batch_at) == (0, 0, None, None)
    assert count == 2
    assert oldest is not None
    assert abs((datetime.now(UTC) - oldest).total_seconds() - 120) < 5
    with engine.connect() as conn:
        assert len(ledger.in_flight(conn, limit=1)) == 1


def test_recent_answers_carry_requests_answers_and_reasons_newest_first(engine) -> None:
    attempt(engine, "ok", 1, "done", 100, finished_at=ago(30), rows_deleted=500, batches=5)
    request(engine, "ok", 1, offset=7)
    request(engine, "ok", 1, offset=9)  # joined the running attempt: answered by it too
    answer(engine, "ok", 1, offset=7)
    answer(engine, "ok", 1, offset=9)
    attempt(engine, "bad", 1, "failed", 100, finished_at=ago(10), reason="<b>table gone</b>")
    request(engine, "bad", 1, offset=11)  # no answer row: a worker before rd0003
    attempt(engine, "ok", 2, "running", 5)  # running: not an answer
    with engine.connect() as conn:
        answers = ledger.recent_answers(conn, limit=10)
    assert [(a.record_id, a.attempt, a.outcome) for a in answers] == [("bad", 1, "failed"), ("ok", 1, "done")]
    bad, ok = answers
    assert bad.reason == "<b>table gone</b>"
    assert bad.requests == [ledger.Coordinates("records_to_be_deleted", 1, 11)]
    assert bad.answers == []
    assert [c.offset for c in ok.requests] == [7, 9]
    assert [c.offset for c in ok.answers] == [1007, 1009]
    assert (ok.rows_deleted, ok.batches) == (500, 5)


def test_throughput_buckets_rows_and_completed_records_of_the_window(engine) -> None:
    batch(engine, "r", 1, 100, at=1)
    batch(engine, "r", 1, 50, at=2)
    batch(engine, "old", 1, 999, at=3600)  # outside the window
    attempt(engine, "r", 1, "done", 30, finished_at=ago(1))
    attempt(engine, "f", 1, "failed", 30, finished_at=ago(1))  # not a completed record
    with engine.connect() as conn:
        t = ledger.throughput(conn, window_seconds=600, bucket_seconds=10)
    assert len(t.buckets) == len(t.rows) == len(t.records) == 60
    assert t.buckets == sorted(t.buckets)
    assert sum(t.rows) == 150
    assert sum(t.records) == 1
    assert sum(t.rows[-2:]) == 150  # in the newest buckets


def test_the_search_shows_every_request_attempt_batch_and_answer_of_one_record(engine) -> None:
    """The search box reads what `record-deleter evidence` reads (`find_history`), as four tables
    and the chain's verdict: these hand-written batch rows carry no valid hash, so it is broken."""
    attempt(
        engine, "rec", 1, "failed", 300, finished_at=ago(200), reason="plan", plan="record_rows:record_id"
    )
    request(engine, "rec", 1, offset=1)
    attempt(engine, "rec", 2, "done", 100, finished_at=ago(50), final_counts='{"record_rows": 0}')
    request(engine, "rec", 2, offset=5)
    batch(engine, "rec", 2, 10, at=90, worker="worker-a")
    batch(engine, "rec", 2, 3, at=80)
    answer(engine, "rec", 1, offset=1, outcome="failed")
    answer(engine, "rec", 2, offset=5)
    request(engine, "other", 1, offset=2)
    find = builders.sql_store(engine).find_history
    history = history_document(find, " rec ")
    json.dumps(history)  # JSON-ready: datetimes as ISO strings
    assert [r["offset"] for r in history["requests"]] == [1, 5]
    assert [(a["attempt"], a["state"]) for a in history["attempts"]] == [(1, "failed"), (2, "done")]
    assert history["attempts"][0]["plan"] == "record_rows:record_id"
    assert history["attempts"][0]["started_at"].endswith("+00:00")
    assert history["attempts"][1]["final_counts"] == {"record_rows": 0}
    assert [(b["rows_deleted"], b["worker"]) for b in history["batches"]] == [(10, "worker-a"), (3, None)]
    assert history["batches"][0]["tables"] == {"record_rows": 10}
    assert [(a["outcome"], a["offset"]) for a in history["answers"]] == [("failed", 1001), ("deleted", 1005)]
    assert history["chain"]["intact"] is False
    assert history["chain"]["summary"].startswith("chain broken")
    assert history_document(find, "nobody")["chain"] is None
    assert "error" in history_document(find, "bad\x00id")


def test_a_hashed_id_is_shown_and_found_by_the_16_digits_the_logs_show(engine) -> None:
    from record_deleter.adapters.evidence_chain import AuditIdentity

    attempt(engine, HASHED, 1, "running", 10)
    request(engine, HASHED, 1, offset=3)
    with engine.connect() as conn:
        (row,) = ledger.in_flight(conn, limit=5)
    assert row.shown_id == HASHED[:16]
    store = builders.sql_store(engine, identity=AuditIdentity(ledger_key=b"k"))
    history = history_document(store.find_history, HASHED[:16])
    assert [r["offset"] for r in history["requests"]] == [3]
    assert history["requests"][0]["shown_id"] == HASHED[:16]


def test_rows_left_are_counted_in_the_plans_tables_and_running_differs_from_waiting(engine) -> None:
    seed(engine, {"busy": 40, "stuck": 7})
    attempt(engine, "busy", 1, "running", 100)
    batch(engine, "busy", 1, 10, at=1)
    attempt(engine, "stuck", 1, "running", 100)
    batch(engine, "stuck", 1, 10, at=60)  # nothing since: the database unreachable, say
    attempt(engine, HASHED, 1, "running", 100)
    store = builders.sql_store(engine)
    counter = RowsLeftCounter(store.count_rows, ttl=60)
    overview = DashboardOverview(engine, counter, OverviewLimits(running_seconds=10, cache_seconds=0))
    document = overview()
    json.dumps(document)
    assert document["error"] is None
    rows = {r["record_id"]: r for r in document["in_flight"]}
    assert rows["busy"]["rows_left"] == 41  # 40 record_rows + its records row
    assert rows["busy"]["status"] == "running"
    assert rows["stuck"]["status"] == "waiting"
    assert rows["stuck"]["rows_left"] == 8
    assert rows[HASHED]["rows_left"] is None  # the application's rows are not keyed by the hash
    assert rows[HASHED]["shown_id"] == HASHED[:16]
    assert document["in_flight_count"] == 3
    assert document["oldest_in_flight_seconds"] >= 99
    assert document["workers"] == []
    rates = document["throughput"]
    assert rates["rows_per_second"] == 20 / 600  # both batches, over the ten minutes
    assert 10 / 31 <= rates["recent_rows_per_second"] <= 10 / 20  # the last one only, over ~30 s
