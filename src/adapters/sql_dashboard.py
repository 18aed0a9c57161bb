"""What the dashboard reads from the deletion ledger: records in flight, recent answers,
throughput (one record's whole history is the evidence reader's: `SqlRecordStore.find_history`).

Read-only, and bounded per refresh: a person watching the page must not slow the workers down.
In-flight records are read at most `limit` at a time (their remaining rows are counted by
`dashboard_overview.RowsLeftCounter`, for those only).

The rd0003 evidence columns (`deletion_audit.worker`, `.tables`, `.chain_hash`, the attempts'
`plan`, `final_counts`, `audit_head`, and `deletion_answers`) may be empty: a worker that does
not write them yet leaves NULLs, which are passed on as None (the page shows "—").
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Integer, and_, cast, func, select

from .sql_engine import as_utc
from .sql_schema import deletion_answers, deletion_attempts, deletion_audit, deletion_requests

HASHED_ID = re.compile(r"[0-9a-f]{64}")
SHOWN_HASH_DIGITS = 16  # what the logs show of a hashed id (WORKER_LOG_RECORD_IDS=hashed)


def shown_id(record_id: str) -> str:
    """A record id as the page shows it: a 64-hex (hashed) id as its first 16 digits, as in logs."""
    return record_id[:SHOWN_HASH_DIGITS] if HASHED_ID.fullmatch(record_id) else record_id


@dataclass(frozen=True, slots=True)
class InFlight:
    record_id: str
    shown_id: str
    attempt: int
    started_at: datetime
    rows_deleted: int
    rows_left: int | None  # None: not counted (over the bound, a hashed id, the database down)
    batches: int
    last_batch_at: datetime | None
    worker: str | None


@dataclass(frozen=True, slots=True)
class Coordinates:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class AnswerRow:
    """A closed attempt: its outcome, the requests it answered and the answers published."""

    record_id: str
    shown_id: str
    attempt: int
    outcome: str  # done | failed
    started_at: datetime
    finished_at: datetime | None
    rows_deleted: int
    batches: int
    reason: str | None
    requests: list[Coordinates]
    answers: list[Coordinates]  # empty until the worker records them (rd0003)


@dataclass(frozen=True, slots=True)
class Throughput:
    bucket_seconds: int
    buckets: list[int]  # bucket start, epoch seconds, oldest first
    rows: list[int]
    records: list[int]


def _epoch(conn: Connection, column: Any) -> ColumnElement[Any]:
    """Seconds since the epoch of a timestamp column, in this database's dialect."""
    if conn.dialect.name == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return cast(func.floor(func.extract("epoch", column)), Integer)


def _cutoff(conn: Connection, seconds: float) -> datetime:
    moment = datetime.now(UTC) - timedelta(seconds=seconds)
    return moment.replace(tzinfo=None) if conn.dialect.name == "sqlite" else moment


def in_flight(conn: Connection, limit: int) -> list[InFlight]:
    """The running attempts, oldest first, with their totals so far (rows left not yet counted)."""
    a, d, last = deletion_attempts.c, deletion_audit.c, deletion_audit.alias("last").c
    latest_worker = (
        select(last.worker)
        .where(last.record_id == a.record_id, last.attempt == a.attempt)
        .order_by(last.id.desc())
        .limit(1)
        .correlate(deletion_attempts)
        .scalar_subquery()
    )
    query = (
        select(
            a.record_id,
            a.attempt,
            a.started_at,
            func.coalesce(func.sum(d.rows_deleted), 0),
            func.count(d.id),
            func.max(d.deleted_at),
            latest_worker,
        )
        .outerjoin(deletion_audit, and_(d.record_id == a.record_id, d.attempt == a.attempt))
        .where(a.state == "running")
        .group_by(a.record_id, a.attempt, a.started_at)
        .order_by(a.started_at, a.record_id)
        .limit(limit)
    )
    return [
        InFlight(
            record_id=rid,
            shown_id=shown_id(rid),
            attempt=int(n),
            started_at=as_utc(start),
            rows_deleted=int(rows),
            rows_left=None,
            batches=int(batches),
            last_batch_at=as_utc(last),
            worker=worker,
        )
        for rid, n, start, rows, batches, last, worker in conn.execute(query)
    ]


def in_flight_summary(conn: Connection) -> tuple[int, datetime | None]:
    """How many attempts run, and when the oldest of them started."""
    a = deletion_attempts.c
    query = select(func.count(), func.min(a.started_at)).where(a.state == "running")
    count, oldest = conn.execute(query).one()
    return int(count), as_utc(oldest)


def joined_request_keys(conn: Connection, keys: list[str]) -> set[str]:
    """Which of these request keys the ledger holds (their workflow's first step joined it)."""
    if not keys:
        return set()
    r = deletion_requests.c
    return {str(k) for k in conn.execute(select(r.request_key).where(r.request_key.in_(keys))).scalars()}


def _coordinates(
    conn: Connection, table: Any, pairs: set[tuple[str, int]]
) -> dict[tuple[str, int], list[Coordinates]]:
    """The (topic, partition, offset) rows of `table` for these (record, attempt) pairs."""
    out: dict[tuple[str, int], list[Coordinates]] = {}
    if not pairs:
        return out
    c = table.c
    query = (
        select(c.record_id, c.attempt, c.topic, c.partition, c.offset)
        .where(c.record_id.in_({rid for rid, _ in pairs}))
        .order_by(c.id)
    )
    for rid, attempt, topic, partition, offset in conn.execute(query):
        if (rid, attempt) in pairs:
            out.setdefault((rid, attempt), []).append(Coordinates(topic, int(partition), int(offset)))
    return out


def recent_answers(conn: Connection, limit: int) -> list[AnswerRow]:
    """The attempts that ended last (done or failed), newest first, with their coordinates."""
    a = deletion_attempts.c
    rows = conn.execute(
        select(
            a.record_id, a.attempt, a.state, a.started_at, a.finished_at, a.rows_deleted, a.batches, a.reason
        )
        .where(a.state != "running")
        .order_by(a.finished_at.desc(), a.record_id)
        .limit(limit)
    ).all()
    pairs = {(r[0], int(r[1])) for r in rows}
    requests = _coordinates(conn, deletion_requests, pairs)
    answers = _coordinates(conn, deletion_answers, pairs)
    return [
        AnswerRow(
            rid,
            shown_id(rid),
            int(n),
            state,
            as_utc(start),
            as_utc(end),
            int(rows or 0),
            int(batches or 0),
            reason,
            requests.get((rid, int(n)), []),
            answers.get((rid, int(n)), []),
        )
        for rid, n, state, start, end, rows, batches, reason in rows
    ]


def throughput(conn: Connection, window_seconds: int, bucket_seconds: int) -> Throughput:
    """Rows deleted and records completed per bucket over the last `window_seconds`."""
    d, a = deletion_audit.c, deletion_attempts.c
    cutoff = _cutoff(conn, window_seconds)
    row_bucket = (_epoch(conn, d.deleted_at) // bucket_seconds).label("b")
    rows = {
        int(b): int(n)
        for b, n in conn.execute(
            select(row_bucket, func.sum(d.rows_deleted)).where(d.deleted_at >= cutoff).group_by(row_bucket)
        )
    }
    done_bucket = (_epoch(conn, a.finished_at) // bucket_seconds).label("b")
    done = {
        int(b): int(n)
        for b, n in conn.execute(
            select(done_bucket, func.count())
            .where(a.state == "done", a.finished_at >= cutoff)
            .group_by(done_bucket)
        )
    }
    last = int(time.time()) // bucket_seconds
    numbers = range(last - window_seconds // bucket_seconds + 1, last + 1)
    return Throughput(
        bucket_seconds,
        [b * bucket_seconds for b in numbers],
        [rows.get(b, 0) for b in numbers],
        [done.get(b, 0) for b in numbers],
    )
