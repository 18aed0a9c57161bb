"""The DBOS Transact peer of the worker, a hand-off benchmark subject: `python -m benchmarks.dbos_worker`.

It does the worker's job with DBOS instead of Resonate: `DBOS.kafka_consumer` reads the request
topic (value: a JSON record id, or a list whose first item is the id) and durably enqueues one
`DBOS.workflow` per message; the workflow deletes the record's rows batch by batch, one durable
`DBOS.step` per batch running exactly naive.py's statements (a batched DELETE per plan table, the
"rows left?" probe, an audit row, one transaction per batch), then publishes the completion
(`[id, offset]`, key = id) in a last step that waits for the broker's acknowledgement and emits
naive.py's `completion_published` event. The steps use an SQLAlchemy engine of their own on
DATABASE_URL (SQLite or PostgreSQL: `DBOS.transaction` would tie the data to one backend), tuned
as the worker tunes its engine (SQLite: WAL, busy timeout 30 s; PostgreSQL: a pool of
DATABASE_POOL_SIZE plus as many overflow).

Configured by environment variables: the worker's BROKER_BOOTSTRAP_SERVERS, BROKER_REQUEST_TOPIC,
BROKER_COMPLETION_TOPIC, BROKER_GROUP, DATABASE_URL, DATABASE_POOL_SIZE, WORKFLOW_BATCH_SIZE, plus
DBOS_SYSTEM_DATABASE_URL (its system database: PostgreSQL, a fresh one per run),
DBOS_KAFKA_QUEUE_POLLING_SECONDS (how often the queue the consumer fills is polled for workflows
to start; DBOS's default is 1 s, the benchmark sets 0.1). Otherwise DBOS's defaults: the internal
Kafka queue, unordered, no concurrency limit.

It runs in a virtual environment of its own (scripts/bench.sh makes `.venv-bench-dbos`), so it
imports nothing from the project.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from confluent_kafka import KafkaError, Producer
from dbos import DBOS, DBOSConfig, KafkaMessage
from sqlalchemy import Engine, create_engine, event, text

PLAN = (("record_rows", "record_id"), ("records", "id"))  # naive.py's: the sample tables, children first
ENV = os.environ
BATCH = int(ENV.get("WORKFLOW_BATCH_SIZE", "1000"))
DELETES = [
    (
        text(f"DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE {k} = :key LIMIT :n)"),
        text(f"SELECT EXISTS (SELECT 1 FROM {t} WHERE {k} = :key)"),
    )
    for t, k in PLAN
]
AUDIT = text("INSERT INTO deletion_audit (record_id, rows_deleted) VALUES (:key, :rows)")


def make_engine(url: str, pool_size: int) -> Engine:
    """The worker's engine settings (src/adapters/sql_engine.py), for concurrent workflow threads."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


ENGINE = make_engine(ENV["DATABASE_URL"], int(ENV.get("DATABASE_POOL_SIZE", "8")))
PRODUCER = Producer({"bootstrap.servers": ENV["BROKER_BOOTSTRAP_SERVERS"], "enable.idempotence": True})

config: DBOSConfig = {
    "name": "record-deleter-bench",
    "system_database_url": ENV["DBOS_SYSTEM_DATABASE_URL"],
    "kafka_queue_polling_interval_sec": float(ENV.get("DBOS_KAFKA_QUEUE_POLLING_SECONDS", "1.0")),
    "log_level": ENV.get("DBOS_LOG_LEVEL", "WARNING"),
}
DBOS(config=config)


@DBOS.step(retries_allowed=True, max_attempts=5)
def delete_batch(key: str) -> tuple[int, bool]:
    """One batch in one transaction: rows deleted, and whether the record has rows left."""
    with ENGINE.begin() as conn:
        budget, more = BATCH, False
        for i, (delete, left) in enumerate(DELETES):
            budget -= max(conn.execute(delete, {"key": key, "n": budget}).rowcount, 0)
            if (budget == 0 and i < len(DELETES) - 1) or conn.execute(left, {"key": key}).scalar():
                more = True
                break
        conn.execute(AUDIT, {"key": key, "rows": BATCH - budget})
    return BATCH - budget, more


@DBOS.step(retries_allowed=True, max_attempts=5)
def publish(key: str, offset: int, rows: int, batches: int) -> None:
    """The completion, once the broker has acknowledged it."""
    errors: list[KafkaError | None] = []
    PRODUCER.produce(
        ENV["BROKER_COMPLETION_TOPIC"],
        value=json.dumps([key, offset]).encode(),
        key=key.encode(),
        on_delivery=lambda err, _msg: errors.append(err),
    )
    PRODUCER.flush(30)
    if not errors or errors[0] is not None:
        raise RuntimeError(f"completion of {key} not acknowledged: {errors[0] if errors else 'timeout'}")
    event = {
        "event": "completion_published",
        "record_id": key,
        "offset": offset,
        "rows": rows,
        "batches": batches,
    }
    os.write(2, (json.dumps(event) + "\n").encode())  # one write: workflows run in many threads


consumer_config = {
    "bootstrap.servers": ENV["BROKER_BOOTSTRAP_SERVERS"],
    "group.id": ENV["BROKER_GROUP"],
    "auto.offset.reset": "earliest",
}


@DBOS.kafka_consumer(consumer_config, [ENV["BROKER_REQUEST_TOPIC"]])
@DBOS.workflow()
def delete_request(msg: KafkaMessage) -> None:
    raw = msg.value.encode() if isinstance(msg.value, str) else msg.value
    value = json.loads(raw or b"null")
    key = value[0] if isinstance(value, list) else value
    rows = batches = 0
    more = True
    while more:
        deleted, more = delete_batch(key)
        rows, batches = rows + deleted, batches + 1
    publish(key, msg.offset or 0, rows, batches)


def main() -> None:
    DBOS.launch()
    threading.Event().wait()  # until SIGTERM


if __name__ == "__main__":
    main()
