"""Reading a record's evidence from the ledger: `record_history` (the `evidence` command and the
dashboard's search both call it).

Four indexed reads by record id (attempts, requests, audit rows, answers), assembled into the
domain's `RecordHistory` (times time-zone aware, whatever the database returns), with the audit
chain checked (`evidence_chain.verify`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, select

from ..domain.evidence import AnswerEvidence, AttemptEvidence, BatchEvidence, RecordHistory, RequestEvidence
from .evidence_chain import verify
from .sql_engine import as_utc
from .sql_schema import deletion_answers, deletion_attempts, deletion_audit, deletion_requests


@contextmanager
def _connection(conn_or_engine: Connection | Engine) -> Iterator[Connection]:
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            yield conn
    else:
        yield conn_or_engine


def record_history(
    conn_or_engine: Connection | Engine, stored_record_id: str, *, chain_key: bytes | None = None
) -> RecordHistory | None:
    """Every attempt of the record (its id as the ledger stores it) with its requests, batches,
    final counts and answers, oldest first, and the chain checked (an HMAC chain needs its
    `chain_key`); None when the ledger holds nothing about it."""
    with _connection(conn_or_engine) as conn:
        attempts = conn.execute(
            select(deletion_attempts)
            .where(deletion_attempts.c.record_id == stored_record_id)
            .order_by(deletion_attempts.c.attempt)
        ).all()
        if not attempts:
            return None
        requests = _by_attempt(conn, deletion_requests, stored_record_id, _request)
        batches = _by_attempt(conn, deletion_audit, stored_record_id, _batch)
        answers = _by_attempt(conn, deletion_answers, stored_record_id, _answer)
    found = tuple(
        _attempt(m._mapping, requests[n], batches[n], answers[n])
        for m in attempts
        for n in [int(m._mapping["attempt"])]
    )
    return RecordHistory(stored_record_id, found, verify(stored_record_id, found, chain_key))


def stored_ids_starting(conn: Connection, prefix: str, limit: int) -> list[str]:
    """Distinct ledger record ids starting with `prefix` (a hashed id as a log line shows it)."""
    a = deletion_attempts.c
    query = (
        select(a.record_id)
        .where(a.record_id.startswith(prefix, autoescape=True))
        .group_by(a.record_id)
        .limit(limit)
    )
    return [str(r) for r in conn.execute(query).scalars()]


def _by_attempt(conn: Connection, table: Any, stored_record_id: str, build: Any) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = defaultdict(list)
    rows = conn.execute(select(table).where(table.c.record_id == stored_record_id).order_by(table.c.id))
    for row in rows:
        m = row._mapping
        out[int(m["attempt"])].append(build(m))
    return out


def _json(text: str | None) -> dict[str, int] | None:
    return None if text is None else {str(k): int(v) for k, v in json.loads(text).items()}


def _attempt(m: Any, requests: list[Any], batches: list[Any], answers: list[Any]) -> AttemptEvidence:
    return AttemptEvidence(
        attempt=int(m["attempt"]),
        state=m["state"],
        started_at=as_utc(m["started_at"]),
        finished_at=as_utc(m["finished_at"]),
        rows_deleted=None if m["rows_deleted"] is None else int(m["rows_deleted"]),
        batches=None if m["batches"] is None else int(m["batches"]),
        reason=m["reason"],
        plan=m["plan"],
        final_counts=_json(m["final_counts"]),
        audit_head=m["audit_head"],
        requests=tuple(requests),
        batch_rows=tuple(batches),
        answers=tuple(answers),
    )


def _request(m: Any) -> RequestEvidence:
    return RequestEvidence(
        m["request_key"],
        int(m["attempt"]),
        m["topic"],
        int(m["partition"]),
        int(m["offset"]),
        m["message_timestamp"],
        as_utc(m["received_at"]),
    )


def _batch(m: Any) -> BatchEvidence:
    return BatchEvidence(
        int(m["id"]),
        int(m["attempt"]),
        int(m["rows_deleted"]),
        _json(m["tables"]),
        as_utc(m["deleted_at"]),
        m["worker"],
        m["chain_hash"],
    )


def _answer(m: Any) -> AnswerEvidence:
    return AnswerEvidence(
        m["request_key"],
        int(m["attempt"]),
        m["outcome"],
        m["topic"],
        int(m["partition"]),
        int(m["offset"]),
        m["worker"],
        as_utc(m["published_at"]),
    )
