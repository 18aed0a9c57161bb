"""Ports: what the domain needs from the outside world, named by role."""

from __future__ import annotations

from typing import Protocol

from .messages import OutboundMessage
from .model import BatchResult, Completion, DeletionFailed, InboundMessage, RecordId


class RecordStore(Protocol):
    """Deletes a record's rows in bounded batches; deleting what is already gone is a no-op."""

    def delete_batch(self, record_id: RecordId, batch_size: int) -> BatchResult: ...


class RecordInventory(Protocol):
    """Creates and counts a record's rows (seeding, verification, status)."""

    def add_record(self, record_id: RecordId, rows: int) -> None: ...

    def count_rows(self, record_id: RecordId) -> int: ...

    def batches_done(self, record_id: RecordId) -> int: ...


class CompletionPublisher(Protocol):
    """Publishes outcomes; returns only once the broker confirmed the write, raises otherwise."""

    def publish(self, completion: Completion) -> None: ...

    def publish_failure(self, failure: DeletionFailed) -> None: ...


class RequestSource(Protocol):
    """Delivers request messages and records which offsets were durably handed off."""

    def poll(self, timeout: float) -> InboundMessage | None: ...

    def mark_done(self, message: InboundMessage) -> None: ...

    def commit(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...


class TopicWriter(Protocol):
    """Writes one message to a topic; returns once the broker confirmed it, raises BrokerUnavailable
    (MessageTooLarge for a message the broker refuses by size) otherwise."""

    def write(self, topic: str, message: OutboundMessage) -> None: ...


class DeadLetterSink(Protocol):
    """Writes a poison message to the dead-letter topic; returns only once it is confirmed."""

    def send(self, message: OutboundMessage) -> None: ...


class WorkflowStarter(Protocol):
    """Durably creates (or attaches to) the workflow of a record; returns once it exists."""

    def start(self, record_id: RecordId, offset: int) -> None: ...

    def in_flight(self) -> int: ...
