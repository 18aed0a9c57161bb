"""InMemoryRecordStore: the RecordStore contract over dicts, for unit tests and the demo."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..domain.model import AttemptRecord, AttemptTotals, BatchResult, JoinedAttempt, RecordId, RequestRef
from ..domain.ports import DeletionLedger, RecordInventory, RecordStore


@dataclass
class _Attempt:
    opened_by: str
    state: str = "running"
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    rows: int = 0
    batches: int = 0
    reason: str | None = None
    requests: int = 0


class InMemoryRecordStore(RecordStore, RecordInventory, DeletionLedger):
    """Rows are counts per record. `seconds_per_row` simulates deletion cost (for the demo)."""

    def __init__(self, seconds_per_row: float = 0.0) -> None:
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
            attempts[-1].requests += 1
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
            current.rows += deleted
            current.batches += 1
            more = left - deleted > 0
            totals = None if more else self._close(current, "done", None)
        if self._seconds_per_row:
            time.sleep(deleted * self._seconds_per_row)
        return BatchResult(deleted=deleted, more=more, totals=totals)

    def fail_attempt(self, record_id: RecordId, attempt: int, reason: str) -> AttemptTotals:
        with self._lock:
            return self._close(self._attempt(record_id, attempt), "failed", reason)

    def _attempt(self, record_id: RecordId, attempt: int) -> _Attempt:
        attempts = self._attempts[record_id.value]
        while len(attempts) < attempt:  # a batch run without a join (tests of the store alone)
            attempts.append(_Attempt(""))
        return attempts[attempt - 1]

    @staticmethod
    def _close(current: _Attempt, state: str, reason: str | None) -> AttemptTotals:
        if current.state == "running":
            current.state, current.reason, current.finished_at = state, reason, datetime.now(UTC)
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
            a.requests,
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
