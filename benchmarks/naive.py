"""The naive sequential consumer, the hand-off benchmark's baseline: `python -m benchmarks.naive`.

Configured like the worker (BROKER_BOOTSTRAP_SERVERS, BROKER_REQUEST_TOPIC, BROKER_COMPLETION_TOPIC,
BROKER_GROUP, DATABASE_URL, WORKFLOW_BATCH_SIZE). It polls a request, deletes the record's rows
batch by batch with the statements the worker's SQL store runs (a batched DELETE per plan table,
the "rows left?" probe, an audit row, one transaction per batch), publishes the completion
(`[id, offset]`) and waits for the broker's acknowledgement, then commits the request's offset
(synchronously; no auto-commit) and polls the next one. At least once, like the worker: a crash
before the commit redoes the record from its first batch on restart (the deletes find nothing
left, the audit gets a row per batch again, the completion may be published twice). Its engine is
the worker's (`make_engine`: on SQLite, WAL with synchronous=NORMAL), so every store commits with
the same durability. No workflow, no concurrency, no durable progress. It emits the worker's
`completion_published` event as a JSON line, so the harness reads it like a worker.
"""

from __future__ import annotations

import json
import os
import sys

from confluent_kafka import Consumer, KafkaError, Producer
from sqlalchemy import text

from record_deleter.adapters.sql_engine import make_engine

PLAN = (("record_rows", "record_id"), ("records", "id"))  # the sample tables, children first


def main() -> None:
    env = os.environ
    batch = int(env.get("WORKFLOW_BATCH_SIZE", "1000"))
    # the worker's engine: the same SQLite journal and synchronous settings (WAL, NORMAL), so
    # both commit with the same durability
    engine = make_engine(env["DATABASE_URL"], pool_size=1)
    deletes = [
        (
            text(f"DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE {k} = :key LIMIT :n)"),
            text(f"SELECT EXISTS (SELECT 1 FROM {t} WHERE {k} = :key)"),
        )
        for t, k in PLAN
    ]
    audit = text("INSERT INTO deletion_audit (record_id, rows_deleted) VALUES (:key, :rows)")
    producer = Producer({"bootstrap.servers": env["BROKER_BOOTSTRAP_SERVERS"], "enable.idempotence": True})
    consumer = Consumer(
        {
            "bootstrap.servers": env["BROKER_BOOTSTRAP_SERVERS"],
            "group.id": env["BROKER_GROUP"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([env["BROKER_REQUEST_TOPIC"]])
    while True:  # until SIGTERM
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        value = json.loads(msg.value() or b"null")
        key = value[0] if isinstance(value, list) else value
        rows = batches = 0
        more = True
        while more:
            with engine.begin() as conn:
                budget, more = batch, False
                for i, (delete, left) in enumerate(deletes):
                    budget -= max(conn.execute(delete, {"key": key, "n": budget}).rowcount, 0)
                    if (budget == 0 and i < len(deletes) - 1) or conn.execute(left, {"key": key}).scalar():
                        more = True
                        break
                conn.execute(audit, {"key": key, "rows": batch - budget})
            rows, batches = rows + batch - budget, batches + 1
        offset = msg.offset() or 0
        errors: list[KafkaError | None] = []
        producer.produce(
            env["BROKER_COMPLETION_TOPIC"],
            value=json.dumps([key, offset]).encode(),
            key=key.encode(),
            on_delivery=lambda err, _msg: errors.append(err),  # noqa: B023 (served by flush below)
        )
        producer.flush(30)
        if not errors or errors[0] is not None:
            raise RuntimeError(f"completion of {key} not acknowledged: {errors[0] if errors else 'timeout'}")
        consumer.commit(message=msg, asynchronous=False)
        event = {
            "event": "completion_published",
            "record_id": key,
            "offset": offset,
            "rows": rows,
            "batches": batches,
        }
        print(json.dumps(event), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
