"""InMemoryRecordStore: the RecordStore contract over a dict, for unit tests and the demo."""

from __future__ import annotations

import threading
import time
from collections import Counter

from ..domain.model import BatchResult, RecordId
from ..domain.ports import RecordInventory, RecordStore


class InMemoryRecordStore(RecordStore, RecordInventory):
    """Rows are counts per record. `seconds_per_row` simulates deletion cost (for the demo)."""

    def __init__(self, seconds_per_row: float = 0.0) -> None:
        self._rows: dict[str, int] = {}
        self._batches: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._seconds_per_row = seconds_per_row

    def delete_batch(self, record_id: RecordId, batch_size: int) -> BatchResult:
        with self._lock:
            left = self._rows.get(record_id.value, 0)
            deleted = min(left, batch_size)
            if left - deleted > 0:
                self._rows[record_id.value] = left - deleted
            else:
                self._rows.pop(record_id.value, None)
            self._batches[record_id.value] += 1
        if self._seconds_per_row:
            time.sleep(deleted * self._seconds_per_row)
        return BatchResult(deleted=deleted, more=left - deleted > 0)

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
