"""Value objects of the deletion domain."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from .errors import InvalidRecordId

RECORD_ID_MAX_LENGTH = 128
RECORD_ID_ALLOWED = "1 to 128 characters, none of them a control or format character"


@dataclass(frozen=True, slots=True)
class RecordId:
    """Identifier of a record to delete: what real systems use (emails, 'tenant/42', dots, ...).

    It never becomes part of a durable promise id (those derive from the request's coordinates),
    so any printable text is allowed; control and format characters (and line separators) are
    refused because they make logs, headers and evidence ambiguous, and the length is bounded
    by the database columns that hold it.
    """

    value: str

    def __post_init__(self) -> None:
        value = self.value
        if not isinstance(value, str):
            raise InvalidRecordId(f"record id must be a string, got {type(value).__name__}")
        if not value:
            raise InvalidRecordId(f"record id is empty; it must be {RECORD_ID_ALLOWED}")
        if len(value) > RECORD_ID_MAX_LENGTH:
            raise InvalidRecordId(
                f"record id is {len(value)} characters long; at most {RECORD_ID_MAX_LENGTH} are allowed"
            )
        bad = sorted(
            {c for c in value if unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")}
        )
        if bad:
            shown = ", ".join(f"U+{ord(c):04X}" for c in bad[:5])
            raise InvalidRecordId(f"record id contains {shown}; it must be {RECORD_ID_ALLOWED}")

    def __str__(self) -> str:
        return self.value


def headers_as_text(headers: tuple[tuple[str, bytes], ...]) -> list[list[str]]:
    """Headers as JSON-friendly text pairs: values as latin-1, a lossless bytes-to-text mapping
    (how they are stored with a workflow's arguments and in the ledger)."""
    return [[k, v.decode("latin-1")] for k, v in headers]


def headers_from_text(pairs: list[list[str]]) -> tuple[tuple[str, bytes], ...]:
    """The inverse of `headers_as_text`."""
    return tuple((k, v.encode("latin-1")) for k, v in pairs)


@dataclass(frozen=True, slots=True)
class RequestRef:
    """Where a request came from: the coordinates that make it distinct, and its own headers.

    Every distinct request (topic, partition, offset, broker timestamp) gets exactly one answer;
    the timestamp tells a re-created topic's offset 0 from the old one's.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int | None = None  # milliseconds, as the broker stamped it
    headers: tuple[tuple[str, bytes], ...] = ()

    def key(self, namespace: str) -> str:
        """Durable promise id of this request's workflow (redeliveries of it collapse onto it)."""
        return f"rd:req:{namespace}:{self.topic}:{self.partition}:{self.offset}:{self.timestamp or 0}"


@dataclass(frozen=True, slots=True)
class JoinedAttempt:
    """The attempt a request belongs to, and the request that opened it (whose workflow runs it).

    A request joined before (its workflow replaying the join after a crash) also learns whether
    that attempt has closed since, and how: `state` done or failed, with its totals and reason,
    so the replay answers from the ledger instead of deleting again."""

    number: int
    opened_by: str  # the opening request's key (`RequestRef.key`)
    state: str = "running"  # running | done | failed
    totals: AttemptTotals | None = None  # set once the attempt closed
    reason: str | None = None  # why it failed


@dataclass(frozen=True, slots=True)
class AttemptTotals:
    """What one deletion attempt did, counted from the audit trail (exact, crash or not)."""

    rows_deleted: int
    batches: int


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Outcome of one delete batch: how many rows went, whether any remain, and, once none
    remain, the attempt's totals (the batch that finds the record empty also closes the attempt)."""

    deleted: int
    more: bool
    totals: AttemptTotals | None = None


ATTEMPT_STATES = ("running", "done", "failed")


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One deletion attempt as the ledger holds it (status, list, evidence)."""

    record_id: str
    attempt: int
    state: str  # running | done | failed
    started_at: datetime
    finished_at: datetime | None
    totals: AttemptTotals
    reason: str | None
    requests: int


@dataclass(frozen=True, slots=True)
class Answer:
    """The one answer to one request: its record's attempt either deleted everything or failed.

    `idempotency_key` is the request's durable id: a re-published answer (a crash between the
    publish and its checkpoint) carries the same key, so a consumer can drop the copy.
    """

    record_id: RecordId
    request: RequestRef
    attempt: int
    totals: AttemptTotals
    idempotency_key: str
    failure: str | None = None  # None: deleted; else the sanitized reason

    @property
    def deleted(self) -> bool:
        return self.failure is None


@dataclass(frozen=True, slots=True)
class WorkflowParams:
    """Behaviour of one workflow, fixed when it starts and stored with its durable promise.

    Stored, not read from live configuration, so that a replay after a restart with changed
    settings follows the same path as the original run.
    """

    batch_size: int
    pause_seconds: float
    step_seconds: float

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if self.pause_seconds < 0:
            raise ValueError(f"pause must be 0 or more seconds, got {self.pause_seconds}")
        if self.step_seconds < 0:
            raise ValueError(f"step budget must be 0 or more seconds, got {self.step_seconds}")

    @property
    def step_budget(self) -> float:
        """Seconds one delete step may go on after its first batch: none when pausing between batches."""
        return 0.0 if self.pause_seconds > 0 else self.step_seconds


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A request as delivered by a broker, with where it came from."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)
    timestamp: int | None = None  # milliseconds, as the broker stamped it

    @property
    def ref(self) -> RequestRef:
        return RequestRef(self.topic, self.partition, self.offset, self.timestamp, self.headers)
