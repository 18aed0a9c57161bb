"""The audit chain and the ledger's record ids: how evidence is written and checked.

Every batch's audit row carries a hash over its own content and the previous row's hash of the
same record, so editing a row (or removing one) breaks the chain where it happened. Without a
chain key the hash is plain SHA-256: it detects an edit, but someone who can write the database
can also recompute every hash after theirs. With AUDIT_CHAIN_KEY it is HMAC-SHA256, which they
cannot recompute without the key.

Ledger ids: with AUDIT_RECORD_IDS=hashed the ledger stores `ledger_id(key, id)` (the full
HMAC-SHA256 hex) instead of the id; the logs show its first 16 hex digits (`log_id`), so an
operator can match a log line with the ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..domain.evidence import AttemptEvidence, BatchEvidence, ChainVerdict
from .sql_engine import as_utc

LOG_ID_HEX = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ledger_id(key: bytes, record_id: str) -> str:
    """HMAC-SHA256(key, id) as 64 hex digits: what a hashed ledger stores instead of the id."""
    return hmac.new(key, record_id.encode(), hashlib.sha256).hexdigest()


def log_id(key: bytes, record_id: str) -> str:
    """The same HMAC, shortened to what a log line carries (its first 16 hex digits)."""
    return ledger_id(key, record_id)[:LOG_ID_HEX]


@dataclass(frozen=True, slots=True)
class AuditIdentity:
    """Who writes the evidence and with which keys (the store's constructor argument).

    `worker` names the process in every batch and answer row; `ledger_key` set: ledger ids are
    hashed (`ledger_id`); `chain_key` set: the chain is an HMAC."""

    worker: str = "unnamed"
    ledger_key: bytes | None = None
    chain_key: bytes | None = None

    def stored_id(self, record_id: str) -> str:
        """The record id as the ledger stores it."""
        return ledger_id(self.ledger_key, record_id) if self.ledger_key else record_id


def utc_micros(moment: datetime) -> int:
    """Microseconds since the epoch; a naive value (SQLite returns them) is taken as UTC."""
    return (as_utc(moment) - _EPOCH) // timedelta(microseconds=1)


def tables_json(counts: Iterable[tuple[str, int]]) -> str:
    """Rows per plan table, plan order, as the audit row stores (and the chain hashes) them."""
    return json.dumps(dict(counts), separators=(",", ":"))


def chain_hash(
    key: bytes | None,
    previous: str,
    record_id: str,
    attempt: int,
    rows_deleted: int,
    tables: str,
    deleted_at: datetime,
    worker: str,
) -> str:
    """The hash of one audit row: a canonical JSON array of its fields and the previous row's hash
    ("" for a record's first row); SHA-256, or HMAC-SHA256 with a chain key."""
    data = json.dumps(
        [previous, record_id, attempt, rows_deleted, tables, utc_micros(deleted_at), worker],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def verify(record_id: str, attempts: Sequence[AttemptEvidence], key: bytes | None) -> ChainVerdict:
    """Recompute every hash of a record's audit rows, check each links to the one before, and check
    each closed attempt's batch count, rows and audit head against the rows found."""
    rows = sorted((b for a in attempts for b in a.batch_rows), key=lambda b: b.row_id)
    problems: list[str] = []
    notes: list[str] = []
    pruned = bool(attempts) and attempts[0].attempt > 1
    previous: BatchEvidence | None = None
    checked = unchained = 0
    for row in rows:
        if row.chain_hash is None:
            unchained += 1
            previous = None
            continue
        checked += 1
        if previous is None and pruned and checked == 1:
            notes.append(
                f"row {row.row_id} follows attempts removed by `audit prune`: its link to them is not checked"
            )
        elif _expected(key, record_id, row, previous) != row.chain_hash:
            problems.append(_mismatch(row, previous))
        previous = row
    for a in attempts:
        more_problems, more_notes = _attempt_problems(a)
        problems += more_problems
        notes += more_notes
    return ChainVerdict(checked, unchained, tuple(problems), tuple(notes))


def _expected(key: bytes | None, record_id: str, row: BatchEvidence, previous: BatchEvidence | None) -> str:
    return chain_hash(
        key,
        (previous.chain_hash or "") if previous else "",
        record_id,
        row.attempt,
        row.rows_deleted,
        tables_json((row.tables or {}).items()),
        row.deleted_at,
        row.worker or "",
    )


def _mismatch(row: BatchEvidence, previous: BatchEvidence | None) -> str:
    if previous is None:
        return f"row {row.row_id}: hash does not match its content (or a row before it was removed)"
    return (
        f"row {row.row_id}: hash does not match its content (edited) "
        f"or its link to row {previous.row_id} (a row between them removed)"
    )


def _attempt_problems(a: AttemptEvidence) -> tuple[list[str], list[str]]:
    """A closed attempt's own record of its batches (count, rows, head) against the batches found:
    (problems, notes). Batches after its head are a step's late re-run (a zombie after a crash
    finding nothing left): noted, not a break, and chained like the others."""
    if a.state == "running" or a.batches is None:
        return [], []
    if any(b.chain_hash is None for b in a.batch_rows) or (a.audit_head is None and a.batches):
        return [], []  # closed before the evidence schema: nothing recorded to check against
    hashes = [b.chain_hash for b in a.batch_rows]
    if a.audit_head is not None and a.audit_head not in hashes:
        last = f"row {a.batch_rows[-1].row_id}" if a.batch_rows else "none"
        return [
            f"attempt {a.attempt} closed with audit head {a.audit_head[:16]}..., which no batch found has "
            f"(its last batch found: {last}): its last batch is missing or edited",
            f"attempt {a.attempt} closed with {a.batches} batches, {len(a.batch_rows)} found",
        ], []
    end = hashes.index(a.audit_head) + 1 if a.audit_head is not None else 0
    closed, late = a.batch_rows[:end], a.batch_rows[end:]
    problems = []
    if len(closed) != a.batches:
        problems.append(f"attempt {a.attempt} closed with {a.batches} batches, {len(closed)} found")
    found_rows = sum(b.rows_deleted for b in closed)
    if a.rows_deleted is not None and found_rows != a.rows_deleted:
        problems.append(
            f"attempt {a.attempt} closed with {a.rows_deleted} rows deleted, "
            f"its batches add up to {found_rows}"
        )
    notes = [
        f"row {b.row_id}: committed after attempt {a.attempt} closed ({b.rows_deleted} rows), "
        "by a step that re-ran"
        for b in late
    ]
    return problems, notes
