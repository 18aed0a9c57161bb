"""InMemoryRecordStore: the RecordStore contract over dicts, for unit tests and the demo.

It keeps the same evidence as the SQL store (batches with their table and worker, final counts,
answers) so the contract suite can hold both to it; its audit chain is computed the same way.
Pruning is SQL only (an in-memory ledger ends with its process)."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..domain.evidence import (
    AnswerEvidence,
    AttemptEvidence,
    BatchEvidence,
    Delivery,
    PruneCounts,
    RecordHistory,
    RequestEvidence,
)
from ..domain.model import (
    Answer,
    AttemptRecord,
    AttemptTotals,
    BatchResult,
    JoinedAttempt,
    RecordId,
    RequestRef,
)
from ..domain.ports import DeletionLedger, EvidenceArchive, RecordInventory, RecordStore
from .evidence_chain import AuditIdentity, chain_hash, tables_json, verify

TABLE = "records"  # the one "table" of the in-memory store, as its evidence names it


@dataclass
class _Attempt:
    opened_by: str
    state: str = "running"
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    rows: int = 0
    batches: int = 0
    reason: str | None = None
    requests: list[RequestEvidence] = field(default_factory=list)
    batch_rows: list[BatchEvidence] = field(default_factory=list)
    answers: list[AnswerEvidence] = field(default_factory=list)
    final_counts: dict[str, int] | None = None
    audit_head: str | None = None


class InMemoryRecordStore(RecordStore, RecordInventory, DeletionLedger, EvidenceArchive):
    """Rows are counts per record. `seconds_per_row` simulates deletion cost (for the demo)."""

    def __init__(self, seconds_per_row: float = 0.0, identity: AuditIdentity | None = None) -> None:
        self._identity = identity or AuditIdentity()
        self._row_ids = 0
        self._rows: dict[str, int] = {}
        self._batches: Counter[str] = Counter()
        self._attempts: dict[str, list[_Attempt]] = defaultdict(list)
        self._requests: dict[str, int] = {}
        self._lock = threading.Lock()
        self._seconds_per_row = seconds_per_row

    def join_attempt(self, record_id: RecordId, request: RequestRef, request_key: str) -> JoinedAttempt:
        with self._lock:
            attempts = self._attempts[record_id.value]
            if request_key in self._requests:
                n = self._requests[request_key]
                a = attempts[n - 1]
                if a.state == "running":
                    return JoinedAttempt(n, a.opened_by)
                return JoinedAttempt(n, a.opened_by, a.state, AttemptTotals(a.rows, a.batches), a.reason)
            if not attempts or attempts[-1].state != "running":
                attempts.append(_Attempt(request_key))
            attempts[-1].requests.append(
                RequestEvidence(
                    request_key,
                    len(attempts),
                    request.topic,
                    request.partition,
                    request.offset,
                    request.timestamp,
                    datetime.now(UTC),
                )
            )
            self._requests[request_key] = len(attempts)
            return JoinedAttempt(len(attempts), attempts[-1].opened_by)

    def delete_batch(self, record_id: RecordId, batch_size: int, attempt: int) -> BatchResult:
        with self._lock:
            left = self._rows.get(record_id.value, 0)
            deleted = min(left, batch_size)
            if left - deleted > 0:
                self._rows[record_id.value] = left - deleted
            else:
                self._rows.pop(record_id.value, None)
            self._batches[record_id.value] += 1
            current = self._attempt(record_id, attempt)
            if current.state == "running":  # a closed attempt's totals stay as they closed (as in SQL)
                current.rows += deleted
                current.batches += 1
            head = self._audit(record_id, attempt, deleted, current)
            more = left - deleted > 0
            totals = None if more else self._close(current, "done", None, {TABLE: 0}, head)
        if self._seconds_per_row:
            time.sleep(deleted * self._seconds_per_row)
        return BatchResult(deleted=deleted, more=more, totals=totals)

    def fail_attempt(self, record_id: RecordId, attempt: int, reason: str) -> AttemptTotals:
        with self._lock:
            current = self._attempt(record_id, attempt)
            head = current.batch_rows[-1].chain_hash if current.batch_rows else None
            counts = {TABLE: self._rows.get(record_id.value, 0)}
            return self._close(current, "failed", reason, counts, head)

    def _audit(self, record_id: RecordId, attempt: int, deleted: int, current: _Attempt) -> str:
        """The batch's evidence, chained as the SQL store chains it."""
        stored = self._identity.stored_id(record_id.value)
        rows = [b for a in self._attempts[record_id.value] for b in a.batch_rows]
        previous = max(rows, key=lambda b: b.row_id).chain_hash or "" if rows else ""
        now, worker, tables = datetime.now(UTC), self._identity.worker, {TABLE: deleted}
        self._row_ids += 1
        head = chain_hash(
            self._identity.chain_key,
            previous,
            stored,
            attempt,
            deleted,
            tables_json(tables.items()),
            now,
            worker,
        )
        current.batch_rows.append(BatchEvidence(self._row_ids, attempt, deleted, tables, now, worker, head))
        return head

    def record_answer(self, answer: Answer, delivery: Delivery) -> None:
        with self._lock:
            self._attempt(answer.record_id, answer.attempt).answers.append(
                AnswerEvidence(
                    answer.idempotency_key,
                    answer.attempt,
                    "deleted" if answer.deleted else "failed",
                    delivery.topic,
                    delivery.partition,
                    delivery.offset,
                    self._identity.worker,
                    datetime.now(UTC),
                )
            )

    def history(self, record_id: RecordId) -> RecordHistory | None:
        with self._lock:
            attempts = tuple(self._evidence(n, a) for n, a in enumerate(self._attempts[record_id.value], 1))
        if not attempts:
            return None
        stored = self._identity.stored_id(record_id.value)
        return RecordHistory(stored, attempts, verify(stored, attempts, self._identity.chain_key))

    def prune(self, finished_before: datetime, *, dry_run: bool) -> PruneCounts:
        return PruneCounts()  # an in-memory ledger ends with its process

    @staticmethod
    def _evidence(n: int, a: _Attempt) -> AttemptEvidence:
        closed = a.state != "running"
        return AttemptEvidence(
            attempt=n,
            state=a.state,
            started_at=a.started_at,
            finished_at=a.finished_at,
            rows_deleted=a.rows if closed else None,
            batches=a.batches if closed else None,
            reason=a.reason,
            plan=TABLE,
            final_counts=a.final_counts,
            audit_head=a.audit_head,
            requests=tuple(a.requests),
            batch_rows=tuple(a.batch_rows),
            answers=tuple(a.answers),
        )

    def _attempt(self, record_id: RecordId, attempt: int) -> _Attempt:
        attempts = self._attempts[record_id.value]
        while len(attempts) < attempt:  # a batch run without a join (tests of the store alone)
            attempts.append(_Attempt(""))
        return attempts[attempt - 1]

    @staticmethod
    def _close(
        current: _Attempt, state: str, reason: str | None, counts: dict[str, int], head: str | None
    ) -> AttemptTotals:
        if current.state == "running":
            current.state, current.reason, current.finished_at = state, reason, datetime.now(UTC)
            current.final_counts, current.audit_head = counts, head
        return AttemptTotals(current.rows, current.batches)

    def attempts(self, record_id: RecordId) -> list[AttemptRecord]:
        with self._lock:
            return [
                self._record(record_id.value, n, a) for n, a in enumerate(self._attempts[record_id.value], 1)
            ]

    def latest_attempts(self, state: str | None, limit: int) -> list[AttemptRecord]:
        with self._lock:
            latest = [self._record(rid, len(a), a[-1]) for rid, a in self._attempts.items() if a]
        chosen = [r for r in latest if state is None or r.state == state]
        return sorted(chosen, key=lambda r: r.started_at, reverse=True)[:limit]

    @staticmethod
    def _record(record_id: str, n: int, a: _Attempt) -> AttemptRecord:
        return AttemptRecord(
            record_id,
            n,
            a.state,
            a.started_at,
            a.finished_at,
            AttemptTotals(a.rows, a.batches),
            a.reason,
            len(a.requests),
        )

    def add_record(self, record_id: RecordId, rows: int) -> None:
        with self._lock:
            if record_id.value in self._rows:
                raise ValueError(f"record {record_id} already exists")
            self._rows[record_id.value] = rows

    def count_rows(self, record_id: RecordId) -> int:
        with self._lock:
            return self._rows.get(record_id.value, 0)

    def batches_done(self, record_id: RecordId) -> int:
        with self._lock:
            return self._batches[record_id.value]
