"""The evidence the SQL store writes, as functions over the caller's open connection: a batch's
audit row chained to the record's previous one, and an answer's coordinates.

Over the caller's connection so a batch's audit row commits with the batch's DELETEs (a
rolled-back batch leaves none), as `sql_ledger` does for the ledger.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, Select, bindparam, insert, select

from ..domain.evidence import Delivery
from ..domain.model import Answer
from .evidence_chain import AuditIdentity, chain_hash
from .sql_schema import deletion_answers, deletion_attempts, deletion_audit

# Built once (a statement, not a connection): compiled once per engine by SQLAlchemy's cache.
_AUDIT_INSERT = insert(deletion_audit).values(
    record_id=bindparam("record_id"),
    rows_deleted=bindparam("rows_deleted"),
    attempt=bindparam("attempt"),
    tables=bindparam("tables"),
    worker=bindparam("worker"),
    chain_hash=bindparam("chain_hash"),
    deleted_at=bindparam("deleted_at"),
)


def chain_tail(conn: Connection, stored_id: str, attempt: int, *, locked: bool) -> str:
    """The hash the record's next audit row links to ("" for its first, or after rows written
    before the evidence schema). On PostgreSQL the attempt's row is locked first (unless the
    transaction holds it already: `locked`), so two batches of one attempt (a zombie step after a
    crash) take turns and the chain stays a line: the read after the lock sees the other's
    committed row. SQLite has one writer at a time already."""
    a = deletion_attempts.c
    if conn.dialect.name == "postgresql" and not locked:
        conn.execute(
            select(a.attempt).where(a.record_id == stored_id, a.attempt == attempt).with_for_update()
        )
    tail = conn.execute(chain_tail_query(stored_id)).scalar()
    return str(tail or "")


def chain_tail_query(stored_id: str) -> Select[tuple[str | None]]:
    """The record's newest audit row's hash: one probe of `ix_deletion_audit_record_id_id` from
    its end (rd0004), however many batches the record has."""
    d = deletion_audit.c
    return select(d.chain_hash).where(d.record_id == stored_id).order_by(d.id.desc()).limit(1)


def write_batch(
    conn: Connection,
    identity: AuditIdentity,
    stored_id: str,
    attempt: int,
    deleted: int,
    tables: str,
    previous: str,
) -> str:
    """The batch's audit row; returns its chain hash. `deleted_at` is set here (UTC), so the
    value hashed is the value stored."""
    now = datetime.now(UTC)
    head = chain_hash(identity.chain_key, previous, stored_id, attempt, deleted, tables, now, identity.worker)
    conn.execute(
        _AUDIT_INSERT,
        {
            "record_id": stored_id,
            "rows_deleted": deleted,
            "attempt": attempt,
            "tables": tables,
            "worker": identity.worker,
            "chain_hash": head,
            "deleted_at": now,
        },
    )
    return head


def write_answer(
    conn: Connection, identity: AuditIdentity, stored_id: str, answer: Answer, delivery: Delivery
) -> None:
    """One row per answer the broker confirmed (a re-published answer is a second row)."""
    conn.execute(
        insert(deletion_answers).values(
            request_key=answer.idempotency_key,
            record_id=stored_id,
            attempt=answer.attempt,
            outcome="deleted" if answer.deleted else "failed",
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            worker=identity.worker,
            published_at=datetime.now(UTC),
        )
    )
