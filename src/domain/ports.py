"""Ports: what the domain needs from the outside world, named by role."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol

from .evidence import Delivery, PruneCounts, RecordHistory
from .messages import OutboundMessage
from .model import (
    Answer,
    AttemptRecord,
    AttemptTotals,
    BatchResult,
    InboundMessage,
    JoinedAttempt,
    RecordId,
    RequestRef,
)


class RecordStore(Protocol):
    """Deletes a record's rows in bounded batches and keeps the ledger of its deletion attempts.

    At most one attempt per record runs at a time. Deleting what is already gone is a no-op and
    every method is idempotent, so a step that is retried or replayed is harmless. Transient
    trouble (database unreachable, lock timeout) raises RecordStoreUnavailable; a plan that cannot
    work raises DeletionPlanInvalid; a delete the database refuses raises DeletionRejected.
    """

    def join_attempt(self, record_id: RecordId, request: RequestRef, request_key: str) -> JoinedAttempt:
        """Record `request` (once per `request_key`) against the record's running attempt, or open
        the next attempt when none runs (opened by this request); return that attempt."""
        ...

    def delete_batch(self, record_id: RecordId, batch_size: int, attempt: int) -> BatchResult:
        """Delete up to `batch_size` rows for `attempt`; the batch that finds no rows left closes the
        attempt as done in the same transaction and returns its totals."""
        ...

    def fail_attempt(self, record_id: RecordId, attempt: int, reason: str) -> AttemptTotals:
        """Close `attempt` as failed with `reason` (once); return what it deleted before."""
        ...

    def join_and_delete(
        self, record_id: RecordId, request: RequestRef, request_key: str, batch_size: int
    ) -> tuple[JoinedAttempt, BatchResult | None]:
        """`join_attempt`, and a store that can do both in one transaction also runs the first
        batch when this request opened the attempt and it still runs (one commit fewer per small
        record). Returns the batch's result, or None when it ran none (a joiner, a closed attempt,
        a store that does not merge them, or trouble with the batch): the caller then deletes
        with `delete_batch`, and meets any trouble there. The ledger ends up the same either way."""
        return self.join_attempt(record_id, request, request_key), None

    def record_answer(self, answer: Answer, delivery: Delivery) -> None:
        """Keep the coordinates of an answer the broker confirmed, as evidence (idempotent enough:
        a re-published answer is a second row). A store that keeps no evidence does nothing."""


class DeletionLedger(Protocol):
    """Reads the ledger of requests and attempts (status, list, retry)."""

    def attempts(self, record_id: RecordId) -> list[AttemptRecord]: ...

    def latest_attempts(self, state: str | None, limit: int) -> list[AttemptRecord]: ...


class EvidenceArchive(Protocol):
    """Reads the evidence of a record's deletions (`evidence`, the dashboard) and prunes old
    evidence (`audit prune`)."""

    def history(self, record_id: RecordId) -> RecordHistory | None:
        """Every attempt of the record with its requests, batches, final counts and answers, and the
        audit chain checked; None when the record was never requested."""
        ...

    def find_history(self, given: str) -> RecordHistory | None:
        """`history` of a record as an operator names it (`evidence ID`, the dashboard's search):
        its id, or, where the ledger stores ids hashed, the hash as the ledger or a log line shows
        it. Raises InvalidRecordId for an id that is malformed or names more than one record."""
        return self.history(RecordId(given))

    def prune(self, finished_before: datetime, *, dry_run: bool) -> PruneCounts:
        """Remove closed attempts finished before the cutoff with their batches, requests and
        answers (never a running attempt); return what was (or would be) removed."""
        ...


class RecordInventory(Protocol):
    """Creates and counts a record's rows (seeding, verification, status)."""

    def add_record(self, record_id: RecordId, rows: int) -> None: ...

    def count_rows(self, record_id: RecordId) -> int: ...

    def batches_done(self, record_id: RecordId) -> int: ...


class CompletionPublisher(Protocol):
    """Publishes the answer to a request (completion or failure topic); returns where the broker
    confirmed the write, raises PublishFailed otherwise."""

    def publish(self, answer: Answer) -> Delivery: ...


class RequestSource(Protocol):
    """Delivers request messages and records which offsets were durably handed off."""

    def poll(self, timeout: float) -> InboundMessage | None: ...

    def mark_done(self, message: InboundMessage) -> None: ...

    def commit(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...

    def held_partitions(self) -> frozenset[int]:
        """The partitions this member of the group holds now (readiness)."""
        ...

    def lag(self) -> int | None:
        """Messages of the held partitions not handed off yet, if the broker client knows."""
        ...


class TopicWriter(Protocol):
    """Writes one message to a topic; returns where the broker confirmed it, raises BrokerUnavailable
    (MessageTooLarge for a message the broker refuses by size) otherwise."""

    def write(self, topic: str, message: OutboundMessage) -> Delivery: ...


class DeadLetterSink(Protocol):
    """Writes a poison message to the dead-letter topic; returns only once it is confirmed."""

    def send(self, message: OutboundMessage) -> None: ...


class WorkflowStarter(Protocol):
    """Durably creates (or, for a redelivered message, attaches to) the workflow that answers one
    request message; returns once it exists."""

    def start(self, record_id: RecordId, message: InboundMessage) -> None: ...

    def in_flight(self) -> int: ...

    def wait_for_room(self, limit: int, timeout: float) -> bool:
        """Block until fewer than `limit` workflows are in flight (True) or `timeout` passed
        (False). A starter that cannot be woken when one ends checks now and then."""
        deadline = time.monotonic() + timeout
        while self.in_flight() >= limit:
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.01, timeout))
        return True
