"""The Resonate server on its PostgreSQL store (production shape), not just SQLite.

Starts a second server from the binary `scripts/services.sh` built (SERVICES_RESONATE_BIN) against a fresh
database on the suite's PostgreSQL, runs workflows through it, restarts it, and checks that a
completed workflow is still known (state lives in PostgreSQL).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.domain.model import InboundMessage, RecordId
from tests import builders
from tests.conftest import service_endpoint
from tests.harness import free_port, postgres_store_args, postgres_url, resonate_server, unique

pytestmark = pytest.mark.integration


@pytest.fixture
def resonate_database() -> Iterator[tuple[str, int, str, str, str]]:
    url = make_url(postgres_url())
    name = f"resonate_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.host or "127.0.0.1", url.port or 5432, url.username or "", url.password or "", name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_workflows_run_and_persist_on_the_postgres_store(resonate_database, tmp_path) -> None:
    binary = service_endpoint(
        "SERVICES_RESONATE_BIN", "the resonate server binary (built by scripts/services.sh)"
    )
    api, poll = free_port(), free_port()
    broker = InMemoryBroker()
    broker.create_topic("done")
    broker.create_topic("failed")
    store = InMemoryRecordStore()
    rids = [RecordId(unique("pg")) for _ in range(5)]
    for rid in rids:
        store.add_record(rid, 25)
    messages = [
        InboundMessage("requests", 0, i, json.dumps(r.value).encode(), None, (), i)
        for i, r in enumerate(rids)
    ]

    with resonate_server(
        binary, api, poll, postgres_store_args(resonate_database), tmp_path / "resonate.log"
    ):
        group = unique("g")
        runtime = builders.runtime(
            builders.resonate("remote", store_port=str(api), message_source_port=str(poll), group=group),
            store,
            builders.publisher(broker, "done", "failed"),
            params=builders.workflow_params(batch_size=10),
            retry=builders.step_retry(delay=0.1),
            namespace=group,
            target=group,
        )
        try:
            for rid, m in zip(rids, messages, strict=True):
                runtime.start(rid, m)
            keys = [runtime.request_key(m) for m in messages]
            results = [runtime.wait(key, timeout=60) for key in keys]
        finally:
            runtime.stop()
    assert [r["totals"] for r in results] == [[25, 3]] * 5
    assert sorted(json.loads(m.value)[0] for _, m in broker.messages("done")) == sorted(r.value for r in rids)

    # a restarted server still knows them: the state is in PostgreSQL
    with resonate_server(
        binary, api, poll, postgres_store_args(resonate_database), tmp_path / "resonate.log"
    ):
        client = builders.resonate("remote", store_port=str(api), message_source_port=str(poll))
        assert {client.promises.get(key).state for key in keys} == {"RESOLVED"}
    engine = create_engine(make_url(postgres_url()).set(database=resonate_database[4]))
    with engine.connect() as conn:
        tables = conn.execute(
            text("select count(*) from information_schema.tables where table_schema='public'")
        )
        assert tables.scalar_one() > 0
    engine.dispose()
