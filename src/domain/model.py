"""Value objects of the deletion domain."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import InvalidRecordId

RECORD_ID_MAX_LENGTH = 128
_RECORD_ID_PATTERN = re.compile(r"[A-Za-z0-9_:@-]+")
RECORD_ID_ALLOWED = "letters, digits, '_', '-', ':' and '@'"


@dataclass(frozen=True, slots=True)
class RecordId:
    """Identifier of a record to delete.

    It becomes a durable promise id (part of a URL path on the Resonate server) and a SQL bind
    parameter, so it is restricted to a safe character set. '.' is excluded on purpose:
    Resonate names a workflow's steps '<id>.<n>', so a record id 'a.1' would collide with the
    first step of record 'a'.
    """

    value: str

    def __post_init__(self) -> None:
        value = self.value
        if not isinstance(value, str):
            raise InvalidRecordId(f"record id must be a string, got {type(value).__name__}")
        if not value:
            raise InvalidRecordId("record id is empty; it must be 1 to 128 characters")
        if len(value) > RECORD_ID_MAX_LENGTH:
            raise InvalidRecordId(
                f"record id is {len(value)} characters long; at most {RECORD_ID_MAX_LENGTH} are allowed"
            )
        if not _RECORD_ID_PATTERN.fullmatch(value):
            bad = sorted({c for c in value if not _RECORD_ID_PATTERN.fullmatch(c)})
            shown = ", ".join(repr(c) for c in bad[:5])
            raise InvalidRecordId(f"record id contains {shown}; only {RECORD_ID_ALLOWED} are allowed")

    def __str__(self) -> str:
        return self.value


def workflow_id(record_id: RecordId) -> str:
    """The durable promise id of a record's workflow: the record id itself, so duplicates collapse."""
    return record_id.value


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Outcome of one delete batch: how many rows went, and whether any remain."""

    deleted: int
    more: bool


@dataclass(frozen=True, slots=True)
class Completion:
    """Published once a record has no rows left."""

    record_id: RecordId
    offset: int
    rows_deleted: int
    batches: int
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class DeletionFailed:
    """Published when a workflow ends without deleting everything (a permanent error)."""

    record_id: RecordId
    offset: int
    error: str
    rows_deleted: int
    batches: int
    idempotency_key: str


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
