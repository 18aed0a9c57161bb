"""The durable deletion workflow and its steps.

Written against a duck-typed durable context (`run`, `sleep`, `get_dependency`) so the domain
does not import the runtime. The runtime adapter registers these plain functions under stable
names and provides the ports as named dependencies.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any, Protocol

from domain.events import Events, NoEvents
from domain.model import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_PAUSE_SECONDS,
    Completion,
    DeletionFailed,
    RecordId,
    WorkflowParams,
    workflow_id,
)
from domain.ports import CompletionPublisher, RecordStore

WORKFLOW_NAME = "delete_record"
RECORD_STORE = "record_store"
COMPLETION_PUBLISHER = "completion_publisher"
STEP_OPTIONS = "step_options"
EVENTS = "events"


class DurableCall(Protocol):
    """What `ctx.run(...)` returns: a yieldable call that accepts per-call options."""

    def options(self, **kwargs: Any) -> DurableCall: ...


class DurableContext(Protocol):
    """The subset of the durable runtime's context the workflow uses."""

    def run(self, func: Any, *args: Any) -> DurableCall: ...

    def sleep(self, secs: float) -> Any: ...

    def get_dependency(self, key: str, default: Any = None) -> Any: ...


class DeletionAborted(Exception):
    """The workflow stopped before every row was deleted; the failure event was published."""


def delete_batch(ctx: DurableContext, record_id: str, batch_size: int) -> dict[str, Any]:
    """Step: delete one batch. Idempotent: re-running after a crash deletes the next rows or none."""
    store: RecordStore = ctx.get_dependency(RECORD_STORE)
    events: Events = ctx.get_dependency(EVENTS, NoEvents())
    result = store.delete_batch(RecordId(record_id), batch_size)
    events.emit("batch_deleted", record_id=record_id, rows=result.deleted, more=result.more)
    return {"deleted": result.deleted, "more": result.more}


def publish_completion(ctx: DurableContext, record_id: str, offset: int, rows: int, batches: int) -> None:
    """Step: publish the completion; returns once the broker confirmed it."""
    publisher: CompletionPublisher = ctx.get_dependency(COMPLETION_PUBLISHER)
    events: Events = ctx.get_dependency(EVENTS, NoEvents())
    rid = RecordId(record_id)
    publisher.publish(Completion(rid, offset, rows, batches, workflow_id(rid)))
    events.emit("completion_published", record_id=record_id, offset=offset, rows=rows, batches=batches)


def publish_failure(
    ctx: DurableContext, record_id: str, offset: int, error: str, rows: int, batches: int
) -> None:
    """Step: publish that the deletion of a record failed permanently."""
    publisher: CompletionPublisher = ctx.get_dependency(COMPLETION_PUBLISHER)
    events: Events = ctx.get_dependency(EVENTS, NoEvents())
    rid = RecordId(record_id)
    publisher.publish_failure(DeletionFailed(rid, offset, error, rows, batches, workflow_id(rid)))
    events.emit("failure_published", record_id=record_id, offset=offset, error=error)


def delete_record(
    ctx: DurableContext,
    record_id: str,
    offset: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    pause_seconds: float = DEFAULT_PAUSE_SECONDS,
) -> Generator[Any, Any, dict[str, Any]]:
    """Workflow: delete batches while rows remain, pausing durably between them, then publish.

    Every yield is a checkpoint: on replay completed steps return their stored results. A step
    that fails beyond its retry policy ends the workflow: the failure is published to its own
    topic and the workflow is rejected with the reason, so it never retries forever silently.
    """
    params = WorkflowParams(batch_size, pause_seconds)
    options: Mapping[str, Any] = ctx.get_dependency(STEP_OPTIONS, None) or {}
    rows = 0
    batches = 0
    try:
        while True:
            result = yield ctx.run(delete_batch, record_id, params.batch_size).options(**options)
            batches += 1
            rows += int(result["deleted"])
            if not result["more"]:
                break
            if params.pause_seconds > 0:
                yield ctx.sleep(params.pause_seconds)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        yield ctx.run(publish_failure, record_id, offset, error, rows, batches).options(**options)
        raise DeletionAborted(f"record {record_id}: {error}") from exc
    yield ctx.run(publish_completion, record_id, offset, rows, batches).options(**options)
    return {"status": "deleted", "record_id": record_id, "rows_deleted": rows, "batches": batches}
