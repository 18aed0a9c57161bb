"""A failure reason is published on a topic and kept in the ledger: the error's class and words
of our own, never the database's text, which can quote row values (SQLite's RAISE message here;
PostgreSQL's DETAIL lines and first lines alike)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.adapters.sql_migrations import upgrade
from record_deleter.adapters.sql_schema import create_demo_tables
from record_deleter.domain.model import InboundMessage, RecordId
from tests import builders

pytestmark = pytest.mark.unit

HELD = "held-ada@example.com"
ROW_VALUE = "ssn 078-05-1120"  # a row's value, as the application's trigger quotes it


def test_a_constraint_violation_publishes_no_row_value(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reasons.db'}"
    upgrade(url)
    engine = builders.engine(url)
    broker = InMemoryBroker()
    broker.create_topic("done")
    broker.create_topic("failed")
    store = builders.sql_store(engine)
    try:
        create_demo_tables(engine)
        store.add_record(RecordId(HELD), 3)
        with engine.begin() as conn:  # the application refuses, quoting the row it protects
            conn.execute(
                text(
                    f"CREATE TRIGGER hold BEFORE DELETE ON record_rows WHEN OLD.record_id = '{HELD}' "
                    f"BEGIN SELECT RAISE(ABORT, 'row of {HELD} is under legal hold: {ROW_VALUE}'); END"
                )
            )
        runtime = builders.runtime(
            builders.resonate("local"),
            store,
            builders.publisher(broker, "done", "failed"),
            params=builders.workflow_params(batch_size=10, pause_seconds=0, step_seconds=0),
            retry=builders.step_retry(delay=0.01, max_delay=0.05),
            namespace="reasons",
        )
        try:
            message = InboundMessage("requests", 0, 0, json.dumps(HELD).encode(), timestamp=1000)
            runtime.start(RecordId(HELD), message)
            result = runtime.wait(runtime.request_key(message), 20)
        finally:
            runtime.stop()
        [(_, published)] = broker.messages("failed")
        reason = json.loads(published.value)["error"]
        ledger = store.attempts(RecordId(HELD))[-1].reason or ""
    finally:
        engine.dispose()
    assert result["deleted"] is False
    for shown in (reason, ledger, result["failure"]):
        assert shown.startswith(
            "DeletionRejected: the database refused deleting from record_rows (IntegrityError"
        )
        assert ROW_VALUE not in shown, "a row's value on a topic"
        assert "legal hold" not in shown, "the database's own text on a topic"
        assert HELD not in shown
