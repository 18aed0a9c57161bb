"""Evidence end to end: a real worker (Kafka, Resonate server, PostgreSQL) deletes a record, and
`record-deleter evidence ID --format json`, run as an operator runs it, shows where the request
came from, every batch, nothing left, and where the answer really landed on the completion topic.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import wait_for
from tests.harness import (
    Topics,
    evidence_report,
    kafka_bootstrap,
    postgres_url,
    read_topic,
    run_cli,
    unique,
    worker_env,
    worker_process,
)

pytestmark = pytest.mark.system

ROWS = 2_345


def test_evidence_of_a_real_deletion_matches_the_topics_and_the_database(tmp_path) -> None:
    bootstrap = kafka_bootstrap()
    topics = Topics.fresh("evidence")
    prefix = unique("evid") + "-"
    env = worker_env(
        postgres_url(),
        BROKER_BOOTSTRAP_SERVERS=bootstrap,
        BROKER_PARTITIONS="3",
        WORKFLOW_BATCH_SIZE="500",
        WORKFLOW_STEP_RETRY_DELAY="0.2",
        WORKER_NAME="evidence-worker-1",
        **topics.env(),
    )
    record = f"{prefix}000001"
    run_cli("db", "upgrade", env=env)
    run_cli("seed", "--records", "1", "--rows", str(ROWS), "--prefix", prefix, env=env)
    run_cli("setup-topics", env=env)

    with worker_process(env, tmp_path / "worker.log") as worker:
        run_cli("produce", "-n", "1", "--prefix", prefix, env=env)
        [answer] = read_topic(bootstrap, topics.completion, expect=1, timeout=120, settle=0)
        code, report = wait_for(
            lambda: (found := evidence_report(record, env))[1]["attempts"][0]["answers"] and found,
            timeout=30,
            interval=0.5,
            message="the answer's coordinates recorded",
        )
        assert worker.alive(), worker.tail()
    [request] = read_topic(bootstrap, topics.request, expect=1, settle=0)

    assert code == 0, report["chain"]
    [requested] = report["requests"]
    assert (requested["topic"], requested["partition"], requested["offset"]) == (
        topics.request,
        request.partition,
        request.offset,
    )
    [attempt] = report["attempts"]
    assert attempt["state"] == "done"
    batches = attempt["batch_rows"]
    assert sum(b["rows_deleted"] for b in batches) == ROWS + 1, "the record_rows and the records row"
    assert sum(b["tables"]["record_rows"] for b in batches) == ROWS
    assert {b["worker"] for b in batches} == {"evidence-worker-1"}
    assert attempt["final_counts"] == {"record_rows": 0, "records": 0}
    [answered] = attempt["answers"]
    assert (answered["topic"], answered["partition"], answered["offset"]) == (
        topics.completion,
        answer.partition,
        answer.offset,
    )
    assert json.loads(answer.value or b"")[0] == record
    assert report["chain"]["intact"] is True
    assert "intact" in report["chain"]["summary"]
