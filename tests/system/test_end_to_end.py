"""End to end through the CLI, as a user runs it: real Kafka, real Resonate server, PostgreSQL.

db upgrade -> seed -> setup-topics -> two workers in one group -> produce -n N (reference format)
then: every record's rows are gone, exactly one completion per record with value [id, offset],
nothing left uncommitted in the consumer group.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from tests import builders
from tests.conftest import wait_for
from tests.harness import (
    committed_lag,
    held_partitions,
    kafka_bootstrap,
    postgres_url,
    read_topic,
    run_cli,
    unique,
    worker_env,
    worker_process,
)

pytestmark = pytest.mark.system

RECORDS = 40


def test_two_workers_delete_every_record_and_publish_once(tmp_path) -> None:
    bootstrap = kafka_bootstrap()
    db_url = postgres_url()
    prefix = unique("e2e") + "-"
    topics = {
        "BROKER_REQUEST_TOPIC": unique("req"),
        "BROKER_COMPLETION_TOPIC": unique("done"),
        "BROKER_FAILURE_TOPIC": unique("failed"),
        "BROKER_DEAD_LETTER_TOPIC": unique("dlq"),
    }
    group = unique("workers")
    env = worker_env(
        db_url,
        BROKER_BOOTSTRAP_SERVERS=bootstrap,
        BROKER_PARTITIONS="4",
        BROKER_GROUP=group,
        WORKFLOW_BATCH_SIZE="500",
        WORKFLOW_STEP_RETRY_DELAY="0.2",
        **topics,
    )

    run_cli("db", "upgrade", env=env)
    seeded = run_cli(
        "seed", "--records", str(RECORDS), "--max-rows", "5000", "--prefix", prefix, "--seed", "1", env=env
    )
    assert f"seeded {RECORDS} records" in seeded.stdout
    run_cli("setup-topics", env=env)

    with (
        worker_process(env, tmp_path / "worker-1.log") as w1,
        worker_process(env, tmp_path / "worker-2.log") as w2,
    ):
        logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
        wait_for(
            lambda: all(0 < len(held_partitions(log.read_text())) < 4 for log in logs),
            timeout=60,
            message="both workers in the group, the 4 partitions split between them",
        )
        run_cli("produce", "-n", str(RECORDS), "--prefix", prefix, env=env)
        completions = topics["BROKER_COMPLETION_TOPIC"]
        wait_for(
            lambda: len(read_topic(bootstrap, completions, expect=RECORDS, timeout=5, settle=0)) >= RECORDS,
            timeout=180,
            interval=1,
            message=f"{RECORDS} completions",
        )
        wait_for(
            lambda: committed_lag(bootstrap, group, topics["BROKER_REQUEST_TOPIC"]) == 0,
            timeout=30,
            message="every request offset committed",
        )
        assert w1.poll() is None, (tmp_path / "worker-1.log").read_text()[-3000:]
        assert w2.poll() is None, (tmp_path / "worker-2.log").read_text()[-3000:]
    assert w1.returncode == 0, (tmp_path / "worker-1.log").read_text()[-3000:]
    assert w2.returncode == 0, (tmp_path / "worker-2.log").read_text()[-3000:]

    # exactly one completion per record (read again with settle time to catch late duplicates)
    done = read_topic(bootstrap, topics["BROKER_COMPLETION_TOPIC"], expect=RECORDS, settle=2)
    values = [json.loads(m.value or b"") for m in done]
    ids = [v[0] for v in values]
    assert sorted(ids) == sorted(f"{prefix}{i:06d}" for i in range(1, RECORDS + 1))
    assert len(ids) == len(set(ids))
    assert all(isinstance(v[1], int) for v in values)

    engine = builders.engine(db_url)
    with engine.connect() as conn:
        left = conn.execute(
            text("select count(*) from record_rows where record_id like :p"), {"p": prefix + "%"}
        ).scalar_one()
        records_left = conn.execute(
            text("select count(*) from records where id like :p"), {"p": prefix + "%"}
        ).scalar_one()
    engine.dispose()
    assert left == 0
    assert records_left == 0
    assert committed_lag(bootstrap, group, topics["BROKER_REQUEST_TOPIC"]) == 0
    # both workers took part (4 partitions, one group)
    assert all("handed_off" in log.read_text() for log in logs)
