"""What the ledger can show about one record's deletions: the evidence an operator re-checks.

Plain values, read by an adapter (`adapters.sql_evidence`) and formatted by an entrypoint
(`record-deleter evidence`, the dashboard), so both show the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the broker confirmed it wrote a message: the coordinates a consumer can read it at."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class BatchEvidence:
    """One committed batch (one `deletion_audit` row)."""

    row_id: int
    attempt: int
    rows_deleted: int
    tables: dict[str, int] | None  # rows per plan table, plan order; None before the evidence schema
    deleted_at: datetime
    worker: str | None
    chain_hash: str | None  # None: written before the evidence schema (not chained)


@dataclass(frozen=True, slots=True)
class RequestEvidence:
    """One request message the ledger registered, and the attempt that answers it."""

    request_key: str
    attempt: int
    topic: str
    partition: int
    offset: int
    message_timestamp: int | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AnswerEvidence:
    """One answer message the broker confirmed (a re-published answer is a second one)."""

    request_key: str
    attempt: int
    outcome: str  # deleted | failed
    topic: str
    partition: int
    offset: int
    worker: str | None
    published_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptEvidence:
    """One deletion attempt with everything recorded about it."""

    attempt: int
    state: str  # running | done | failed
    started_at: datetime
    finished_at: datetime | None
    rows_deleted: int | None  # as recorded when it closed
    batches: int | None  # as recorded when it closed
    reason: str | None
    plan: str | None
    final_counts: dict[str, int] | None  # the record's rows per plan table when it closed
    audit_head: str | None  # chain hash of its last batch when it closed
    requests: tuple[RequestEvidence, ...] = ()
    batch_rows: tuple[BatchEvidence, ...] = ()
    answers: tuple[AnswerEvidence, ...] = ()


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    """The audit chain of one record checked: intact, or the problems found (first one first)."""

    batches: int  # chained batches checked
    unchained: int  # batches written before the evidence schema
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())  # facts that are not breaks (e.g. pruned history)

    @property
    def intact(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line a person reads: intact with how many batches, or the first break."""
        if self.problems:
            more = f" (and {len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""
            return f"chain broken: {self.problems[0]}{more}"
        text = f"chain intact ({self.batches} {'batch' if self.batches == 1 else 'batches'})"
        if self.unchained:
            text += f"; {self.unchained} not chained (written before the evidence schema)"
        return text


@dataclass(frozen=True, slots=True)
class RecordHistory:
    """Every attempt of one record, as the ledger stores it (`record_id` as stored: clear or hashed)."""

    record_id: str
    attempts: tuple[AttemptEvidence, ...]
    chain: ChainVerdict


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """What `audit prune` removed (or would remove, with --dry-run)."""

    attempts: int = 0
    batches: int = 0
    requests: int = 0
    answers: int = 0
