"""The deletion ledger in SQL: which attempt of a record runs, which requests it answers.

Functions over an open connection, so the store can put a ledger change in the same transaction
as the batch it belongs to (the batch that finds a record empty also closes its attempt).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import Connection, Row, Subquery, and_, func, insert, select, update

from ..domain.model import AttemptRecord, AttemptTotals, JoinedAttempt, RecordId, RequestRef, headers_as_text
from .sql_schema import deletion_attempts, deletion_audit, deletion_requests


def join(
    conn: Connection, record_id: RecordId, request: RequestRef, request_key: str, plan: str | None = None
) -> JoinedAttempt:
    """Register `request` with the running attempt, or open the next one (recording the deletion
    `plan` it runs, as evidence); idempotent by key.

    Two joins racing to open the same next attempt collide on its primary key; the caller retries
    the transaction and the loser then joins the winner's attempt. On PostgreSQL the running
    attempt is read `FOR UPDATE`, so a join waits for an attempt being closed and then opens
    the next one instead of joining one that already finished. Either way the transaction ends up
    holding the attempt's row lock (read FOR UPDATE, or inserted), which the store's first batch
    in the same transaction relies on to chain its audit row (`SqlRecordStore._chain_tail`).
    """
    a, r = deletion_attempts.c, deletion_requests.c
    known = conn.execute(
        select(r.attempt, a.opened_by, a.state, a.rows_deleted, a.batches, a.reason)
        .join(deletion_attempts, and_(a.record_id == r.record_id, a.attempt == r.attempt))
        .where(r.request_key == request_key)
        .with_for_update(of=deletion_attempts)
    ).first()
    if known is not None:
        number, opened_by, state, rows, batches, reason = known
        if state == "running":
            return JoinedAttempt(int(number), str(opened_by))
        closed = AttemptTotals(int(rows or 0), int(batches or 0))
        return JoinedAttempt(int(number), str(opened_by), str(state), closed, reason)
    found = conn.execute(
        select(a.attempt, a.opened_by)
        .where(a.record_id == record_id.value, a.state == "running")
        .with_for_update()
    ).first()
    if found is not None:
        running, opened_by = int(found[0]), str(found[1])
    else:
        last = conn.execute(select(func.max(a.attempt)).where(a.record_id == record_id.value)).scalar()
        running, opened_by = int(last or 0) + 1, request_key
        conn.execute(
            insert(deletion_attempts).values(
                record_id=record_id.value, attempt=running, state="running", opened_by=opened_by, plan=plan
            )
        )
    conn.execute(
        insert(deletion_requests).values(
            request_key=request_key,
            record_id=record_id.value,
            attempt=running,
            topic=request.topic,
            partition=request.partition,
            offset=request.offset,
            message_timestamp=request.timestamp,
            headers=json.dumps(headers_as_text(request.headers)),
        )
    )
    return JoinedAttempt(running, opened_by)


def totals(conn: Connection, record_id: RecordId, attempt: int) -> AttemptTotals:
    """Rows and batches of one attempt, counted from the audit trail."""
    d = deletion_audit.c
    rows, batches = conn.execute(
        select(func.coalesce(func.sum(d.rows_deleted), 0), func.count()).where(
            d.record_id == record_id.value, d.attempt == attempt
        )
    ).one()
    return AttemptTotals(int(rows), int(batches))


def close(
    conn: Connection,
    record_id: RecordId,
    attempt: int,
    state: str,
    reason: str | None = None,
    final_counts: dict[str, int] | None = None,
    audit_head: str | None = None,
) -> AttemptTotals:
    """Close a running attempt as `state` (done | failed) with its totals and its evidence (the
    record's rows per plan table now, the hash of its last batch); a closed one stays as it is."""
    t = totals(conn, record_id, attempt)
    a = deletion_attempts.c
    conn.execute(
        update(deletion_attempts)
        .where(a.record_id == record_id.value, a.attempt == attempt, a.state == "running")
        .values(
            state=state,
            finished_at=datetime.now(UTC),
            rows_deleted=t.rows_deleted,
            batches=t.batches,
            reason=reason,
            final_counts=None if final_counts is None else json.dumps(final_counts, separators=(",", ":")),
            audit_head=audit_head,
        )
    )
    return t


def attempt_head(conn: Connection, record_id: RecordId, attempt: int) -> str | None:
    """The chain hash of the attempt's last audit row (None before its first batch)."""
    d = deletion_audit.c
    return conn.execute(
        select(d.chain_hash)
        .where(d.record_id == record_id.value, d.attempt == attempt)
        .order_by(d.id.desc())
        .limit(1)
    ).scalar()


def _requests_per_attempt() -> Subquery:
    r = deletion_requests.c
    return (
        select(r.record_id, r.attempt, func.count().label("requests"))
        .group_by(r.record_id, r.attempt)
        .subquery()
    )


def attempts(conn: Connection, record_id: RecordId) -> list[AttemptRecord]:
    """Every attempt of a record, oldest first (running ones with their totals so far)."""
    a, sub = deletion_attempts.c, _requests_per_attempt()
    n = sub.c
    query = (
        select(deletion_attempts, func.coalesce(n.requests, 0))
        .outerjoin(sub, and_(n.record_id == a.record_id, n.attempt == a.attempt))
        .where(a.record_id == record_id.value)
        .order_by(a.attempt)
    )
    return [_record(conn, row) for row in conn.execute(query)]


def latest(conn: Connection, state: str | None, limit: int) -> list[AttemptRecord]:
    """The latest attempt of each record (optionally only those in `state`), newest first."""
    a = deletion_attempts.c
    newest = select(a.record_id, func.max(a.attempt).label("attempt")).group_by(a.record_id).subquery()
    sub = _requests_per_attempt()
    query = (
        select(deletion_attempts, func.coalesce(sub.c.requests, 0))
        .join(newest, and_(newest.c.record_id == a.record_id, newest.c.attempt == a.attempt))
        .outerjoin(sub, and_(sub.c.record_id == a.record_id, sub.c.attempt == a.attempt))
        .order_by(a.started_at.desc(), a.record_id)
        .limit(limit)
    )
    if state is not None:
        query = query.where(a.state == state)
    return [_record(conn, row) for row in conn.execute(query)]


def _record(conn: Connection, row: Row) -> AttemptRecord:  # type: ignore[type-arg]
    m = row._mapping
    if m["state"] == "running":
        t = totals(conn, RecordId(m["record_id"]), m["attempt"])
    else:
        t = AttemptTotals(int(m["rows_deleted"] or 0), int(m["batches"] or 0))
    return AttemptRecord(
        record_id=m["record_id"],
        attempt=m["attempt"],
        state=m["state"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        totals=t,
        reason=m["reason"],
        requests=int(row[-1]),
    )
