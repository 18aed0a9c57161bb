"""The durable deletion workflow and its steps.

PERSISTED FORMAT. A workflow's name (`WORKFLOW_NAME`), its argument list (built only by
`workflow_args`, below) and the order of its durable calls (`ctx.run` / `ctx.sleep`) are stored
by the Resonate server with every workflow in flight, and a worker that resumes a workflow after
a crash or an upgrade replays them. Changing any of them breaks the workflows in flight at the
moment of a deploy: add a new workflow name (and keep the old one registered until its last
workflow ended) instead of editing this one in place.

Written against a duck-typed durable context (`run`, `sleep`, `get_dependency`) so the domain
does not import the runtime. The runtime adapter registers these plain functions and provides
the ports as one `WorkflowPorts` dependency, read through `ports(ctx)`.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .events import Events
from .model import Completion, DeletionFailed, RecordId, WorkflowParams, workflow_id
from .ports import CompletionPublisher, RecordStore

WORKFLOW_NAME = "delete_record"
PORTS = "record_deleter.workflow_ports"


class DurableCall(Protocol):
    """What `ctx.run(...)` returns: a yieldable call that accepts per-call options."""

    def options(self, **kwargs: Any) -> DurableCall: ...


class DurableContext(Protocol):
    """The subset of the durable runtime's context the workflow uses."""

    def run(self, func: Any, *args: Any) -> DurableCall: ...

    def sleep(self, secs: float) -> Any: ...

    def get_dependency(self, key: str, default: Any = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class WorkflowPorts:
    """Everything the workflow and its steps reach outside themselves, handed over as one object."""

    store: RecordStore
    publisher: CompletionPublisher
    events: Events
    step_options: Mapping[str, Any]  # the runtime's per-step options (retry policy)


def ports(ctx: DurableContext) -> WorkflowPorts:
    """The workflow's ports, as the runtime registered them (`PORTS`)."""
    found = ctx.get_dependency(PORTS)
    if not isinstance(found, WorkflowPorts):
        raise TypeError(f"the durable runtime must register WorkflowPorts under {PORTS!r}, got {found!r}")
    return found


def workflow_args(record_id: RecordId, offset: int, params: WorkflowParams) -> tuple[Any, ...]:
    """The arguments `delete_record` is started with, in order (a persisted format, see above)."""
    return (record_id.value, offset, params.batch_size, params.pause_seconds, params.step_seconds)


class DeletionAborted(Exception):
    """The workflow stopped before every row was deleted; the failure event was published."""


def delete_batches(
    ctx: DurableContext, record_id: str, batch_size: int, budget_seconds: float
) -> dict[str, Any]:
    """Step: delete a batch, then more while rows remain and `budget_seconds` have not passed.

    Every batch is its own transaction, so a crash mid-step loses only the batch in flight;
    re-running the step deletes the next rows (or none): it is idempotent, and the batches it
    re-executes number at most the one that was in flight. The budget amortizes the step's
    checkpoint over many batches; 0 means one batch per step.
    """
    p = ports(ctx)
    store, events = p.store, p.events
    rid = RecordId(record_id)
    deadline = time.monotonic() + budget_seconds
    deleted = batches = 0
    while True:
        try:
            result = store.delete_batch(rid, batch_size)
        except Exception as exc:
            if batches == 0:
                raise  # the step's retry policy takes over
            # keep what this step achieved: checkpoint it, and let the next step meet the error
            events.emit("step_cut_short", record_id=record_id, batches=batches, rows=deleted, error=repr(exc))
            return {"deleted": deleted, "batches": batches, "more": True}
        batches += 1
        deleted += result.deleted
        events.emit("batch_deleted", record_id=record_id, rows=result.deleted, more=result.more)
        if not result.more or time.monotonic() >= deadline:
            events.emit("step_deleted", record_id=record_id, batches=batches, rows=deleted, more=result.more)
            return {"deleted": deleted, "batches": batches, "more": result.more}


def publish_completion(ctx: DurableContext, record_id: str, offset: int, rows: int, batches: int) -> None:
    """Step: publish the completion; returns once the broker confirmed it."""
    p = ports(ctx)
    rid = RecordId(record_id)
    p.publisher.publish(Completion(rid, offset, rows, batches, workflow_id(rid)))
    p.events.emit("completion_published", record_id=record_id, offset=offset, rows=rows, batches=batches)


def publish_failure(
    ctx: DurableContext, record_id: str, offset: int, error: str, rows: int, batches: int
) -> None:
    """Step: publish that the deletion of a record failed permanently."""
    p = ports(ctx)
    rid = RecordId(record_id)
    p.publisher.publish_failure(DeletionFailed(rid, offset, error, rows, batches, workflow_id(rid)))
    p.events.emit("failure_published", record_id=record_id, offset=offset, error=error)


def delete_record(
    ctx: DurableContext,
    record_id: str,
    offset: int,
    batch_size: int,
    pause_seconds: float,
    step_seconds: float,
) -> Generator[Any, Any, dict[str, Any]]:
    """Workflow: delete batches while rows remain, pausing durably between them, then publish.

    With a pause, every step deletes one batch and the workflow sleeps durably after it; without
    one, a step deletes batches for up to `step_seconds` before it checkpoints.

    Every yield is a checkpoint: on replay completed steps return their stored results. A step
    that fails beyond its retry policy ends the workflow: the failure is published to its own
    topic and the workflow is rejected with the reason, so it never retries forever silently.
    """
    params = WorkflowParams(batch_size, pause_seconds, step_seconds)
    options = ports(ctx).step_options
    rows = 0
    batches = 0
    try:
        while True:
            result = yield ctx.run(delete_batches, record_id, params.batch_size, params.step_budget).options(
                **options
            )
            batches += int(result.get("batches", 1))  # 1: a result stored by a one-batch step
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
