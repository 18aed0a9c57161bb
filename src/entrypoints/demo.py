"""The `demo` command: the whole system in one process on its embedded defaults.

SQLite file (migrated), the in-process broker, Resonate's local store. Seeds records whose row
counts differ by orders of magnitude (the largest first in line), produces one request per record
in the reference example's format plus a duplicate and a malformed message, runs the worker
until every workflow completed, prints completion order next to arrival order, and verifies:
no rows left, one workflow and one completion for the duplicated id, the malformed message on
the dead-letter topic.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..adapters.sql_migrations import prepare_demo_database
from ..domain.messages import decode_completion
from ..domain.model import RecordId
from .containers import DemoContainer
from .progress import Progress
from .settings import BrokerSettings, Settings

DEFAULT_ROWS = (200_000, 40, 2_500, 7, 900, 8_000, 3, 150, 12_000, 60)
MALFORMED = b'{"record": oops'


@dataclass
class Row:
    arrival: int
    record_id: str
    rows: int
    completed: int | None = None
    seconds: float | None = None
    batches: int | None = None


def demo_overrides(db_path: Path) -> dict[str, dict[str, Any]]:
    return {
        "broker": {"kind": "memory", "partitions": 1},
        "database": {"url": f"sqlite:///{db_path}"},
        "resonate": {"mode": "local"},
        # Throttled, as a deployment that protects its database would run: a durable 10 ms
        # sleep between batches. Unthrottled, the 200,000-row record is gone in a quarter of a
        # second and there is no head of line to show.
        "workflow": {"pause_seconds": 0.01},
        "worker": {"log_level": "WARNING"},
    }


def run_demo(container: DemoContainer, *, rows: tuple[int, ...], timeout: float) -> int:
    """Run the demo on a container built by `bootstrap` (memory broker, local Resonate, SQLite)."""
    settings: Settings = container.settings()
    url = settings.database.url_value
    if url is None:
        raise ValueError("the demo sets its own DATABASE_URL (demo_overrides)")
    prepare_demo_database(url)
    try:
        return _run(container, settings.broker, url, rows, timeout, sys.stdout)
    finally:
        container.shutdown_resources()


def _run(
    container: DemoContainer,
    broker_cfg: BrokerSettings,
    db_url: str,
    rows: tuple[int, ...],
    timeout: float,
    out: Any,
) -> int:
    run_tag = time.strftime("%H%M%S")
    table = [Row(i + 1, f"demo-{run_tag}-{i + 1:02d}", n) for i, n in enumerate(rows)]
    store = container.record_store()
    admin = container.topic_admin()
    admin.create(
        {
            broker_cfg.request_topic: 1,
            broker_cfg.completion_topic: 1,
            broker_cfg.failure_topic: 1,
            broker_cfg.dead_letter_topic: 1,
        }
    )

    total = sum(rows)
    print(f"seeding {len(table)} records, {total:,} rows, into {db_url}", file=out)
    progress = Progress("seed", total)
    seeded = 0
    for row in table:
        store.add_record(RecordId(row.record_id), row.rows)
        seeded += row.rows
        progress.update(seeded)

    producer = container.request_producer()
    topic = broker_cfg.request_topic
    duplicate = table[1].record_id
    for row in table:
        # both wire formats of the reference example: "id" and ["id", ...]
        value = json.dumps(row.record_id if row.arrival % 2 else [row.record_id, "extra"]).encode()
        producer.send(topic, value, row.record_id.encode())
    producer.send(topic, json.dumps(duplicate).encode(), duplicate.encode())
    producer.send(topic, MALFORMED, None)
    producer.flush()
    print(f"produced {len(table) + 2} requests (one duplicate of {duplicate}, one malformed)", file=out)

    broker = container.broker.broker()
    container.runtime()
    stop = threading.Event()
    handoff = container.handoff()
    worker = threading.Thread(target=handoff.run, args=(stop.is_set,), name="demo-worker", daemon=True)
    started = time.monotonic()
    worker.start()

    completions = broker_cfg.completion_topic
    deadline = started + timeout
    seen: dict[str, Row] = {}
    by_id = {row.record_id: row for row in table}

    def rows_left() -> int:
        return sum(store.count_rows(RecordId(row.record_id)) for row in table)

    # progress in rows (a record's own row included where the store counts it): the big record
    # is most of the work, so counting records would sit at "9/10" for the seconds that matter
    seeded_rows = rows_left()
    progress = Progress("rows deleted", seeded_rows)
    counted_at = 0.0
    requests = len(table) + 1  # the duplicate is a request of its own: it gets an answer of its own
    while (
        len(seen) < len(table) or len(broker.messages(completions)) < requests
    ) and time.monotonic() < deadline:
        for _, message in broker.messages(completions):
            record_id, _offset = decode_completion(message.value or b"")
            if record_id in by_id and record_id not in seen:
                row = by_id[record_id]
                row.completed = len(seen) + 1
                row.seconds = time.monotonic() - started
                row.batches = int(dict(message.headers).get("batches", b"0"))
                seen[record_id] = row
        if time.monotonic() - counted_at >= 0.25 or len(seen) == len(table):
            counted_at = time.monotonic()
            progress.update(seeded_rows - rows_left())
        broker.wait(0.05)
    stop.set()
    worker.join(10)

    print(file=out)
    print(
        f"{'arrival':>7}  {'record':<20} {'rows':>9}  {'batches':>7}  {'completed':>9}  {'seconds':>7}",
        file=out,
    )
    for row in sorted(table, key=lambda r: r.completed or 10**9):
        done = str(row.completed) if row.completed else "-"
        secs = f"{row.seconds:.2f}" if row.seconds is not None else "-"
        batches = row.batches or "-"
        line = f"{row.arrival:>7}  {row.record_id:<20} {row.rows:>9,}  {batches:>7}  {done:>9}  {secs:>7}"
        print(line, file=out)
    print(file=out)
    return _verify(table, store, broker, broker_cfg, duplicate, out)


def _verify(
    table: list[Row],
    store: Any,
    broker: Any,
    broker_cfg: BrokerSettings,
    duplicate: str,
    out: Any,
) -> int:
    checks: list[tuple[str, bool]] = []
    checks.append(("every record completed", all(r.completed for r in table)))
    left = {r.record_id: store.count_rows(RecordId(r.record_id)) for r in table}
    checks.append((f"no rows left in the database ({sum(left.values())} found)", not any(left.values())))
    big = max(table, key=lambda r: r.rows)
    # "fast" = at least 10x smaller than the large record; those must not wait behind it
    fast = [r for r in table if r.rows * 10 <= big.rows]
    checks.append(
        (
            f"head-of-line: {len(fast)} records >=10x smaller finished before the largest "
            f"({big.record_id}, {big.rows:,} rows, first in line)",
            bool(fast)
            and bool(big.completed)
            and all((r.completed or 0) < (big.completed or 0) for r in fast),
        )
    )
    answers = broker.messages(broker_cfg.completion_topic) + broker.messages(broker_cfg.failure_topic)
    checks.append(
        (
            f"every request message answered exactly once "
            f"({len(table) + 1} requests, {len(answers)} answers)",
            len(answers) == len(table) + 1
            and len(
                {
                    (dict(m.headers)["request-partition"], dict(m.headers)["request-offset"])
                    for _, m in answers
                }
            )
            == len(answers),
        )
    )
    dup_answers = [m for _, m in answers if decode_completion(m.value or b"")[0] == duplicate]
    dup_row = next(r for r in table if r.record_id == duplicate)
    attempts = store.attempts(RecordId(duplicate))
    reported = sum(int(dict(m.headers)["rows-deleted"]) for m in dup_answers) if len(attempts) > 1 else None
    checks.append(
        (
            f"duplicate {duplicate}: 2 requests, {len(dup_answers)} answers, {len(attempts)} attempt(s), "
            f"{sum(a.totals.rows_deleted for a in attempts)} rows ({dup_row.rows} + its records row) "
            "deleted once",
            len(dup_answers) == 2
            and sum(a.totals.rows_deleted for a in attempts) == dup_row.rows + 1  # + its `records` row
            and all(a.state == "done" for a in attempts)
            and (reported is None or reported == dup_row.rows + 1),
        )
    )
    dlq = broker.messages(broker_cfg.dead_letter_topic)
    reasons = [dict(m.headers).get("dlq-error", b"").decode() for _, m in dlq if m.value == MALFORMED]
    checks.append(
        (
            f"malformed message on {broker_cfg.dead_letter_topic}: {reasons[0] if reasons else 'missing'}",
            len(reasons) == 1,
        )
    )
    ok = True
    for text, passed in checks:
        print(f"  [{'ok' if passed else 'FAILED'}] {text}", file=out)
        ok = ok and passed
    print(file=out)
    print("demo passed" if ok else "demo FAILED", file=out)
    return 0 if ok else 1
