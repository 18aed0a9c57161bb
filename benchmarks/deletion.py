"""The deletion-rate benchmark: rows/s deleting one record, by batch size, SQLite and PostgreSQL.

* `raw`: the bare statement `DELETE FROM record_rows WHERE id IN (SELECT id FROM record_rows WHERE
  record_id = :k LIMIT :n)` in a loop, one transaction per batch: the limit.
* `workflow`: a real `record-deleter worker` on a fresh Resonate server deletes the record (its
  default step budget: a step deletes batches for up to WORKFLOW_STEP_SECONDS, then checkpoints),
  timed from its `handed_off` event to its completion's timestamp.
* `workflow_per_batch`: the same with WORKFLOW_STEP_SECONDS=0, a checkpoint after every batch.

Rates count the record's `record_rows` (the worker also deletes its `records` row).
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import text
from tests.harness import produce, topic_reader, wait_for
from tests.harness.database import engine

from benchmarks.handoff import SUBJECTS, Run, start


def raw_delete(db_url: str, record_id: str, rows: int, batch: int) -> dict[str, Any]:
    db = engine(db_url)
    stmt = text(
        "DELETE FROM record_rows WHERE id IN (SELECT id FROM record_rows WHERE record_id = :k LIMIT :n)"
    )
    deleted = batches = 0
    with db.connect() as conn:
        conn.execute(text("SELECT 1"))  # connected before the clock starts
        conn.commit()
        t0 = time.perf_counter()
        while True:
            n = conn.execute(stmt, {"k": record_id, "n": batch}).rowcount
            conn.commit()
            deleted, batches = deleted + n, batches + 1
            if n < batch:
                break
        seconds = time.perf_counter() - t0
    db.dispose()
    if deleted != rows:
        raise RuntimeError(f"raw loop deleted {deleted} of {rows} rows")
    return {"rows": rows, "batches": batches, "seconds": seconds, "rate": rows / seconds}


def workflow_delete(run: Run, record_id: str, rows: int, tag: str) -> dict[str, Any]:
    procs = start(SUBJECTS["worker"], run, tag)
    try:
        with topic_reader(run.bootstrap, run.topics.completion) as reader:
            produce(run.bootstrap, run.topics.request, [json.dumps(record_id).encode()])
            [done] = wait_for(
                lambda: reader.poll(0.2), timeout=600, interval=0, message=f"{record_id} deleted"
            )
        [handed] = procs[0].events.named("handed_off")
    finally:
        for p in procs:
            p.stop()
    seconds = done.timestamp - handed.at
    return {"rows": rows, "seconds": seconds, "rate": rows / seconds}
