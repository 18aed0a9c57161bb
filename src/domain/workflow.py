"""The durable workflow that answers a deletion request, and its steps.

PERSISTED FORMAT. The workflow's name (`REQUEST_WORKFLOW`), its argument list (built only by
`request_args`, below) and the order of its durable calls (`ctx.run` / `ctx.sleep` /
`ctx.promise`) are stored by the Resonate server with every workflow in flight, and a worker that
resumes one after a crash or an upgrade replays them.
Changing any of them breaks the workflows in flight at the moment of a deploy: register a new
name (and keep the old one until its last workflow ended) instead of editing one in place.
Whether a call is durable is not part of that format: the runtime numbers a workflow's calls in
order (`<id>.1`, `<id>.2`, ...) whether or not they make a promise.

Which calls are durable, and why. The first step (`join_and_delete`) and the answer
(`publish_answer`) run without a checkpoint of their own: the store's ledger is their
checkpoint. Re-running the join is idempotent by the request's key and, once the attempt has
closed, answers from the ledger without deleting; re-running a publish re-sends the same bytes,
the publish window the contract already documents. So a one-batch record costs the runtime two
server requests (the workflow's creation and its result), not six. The steps after the first
(`delete_batches`, `fail_attempt`), the pauses and a joiner's wait stay durable.

The request contract they implement:
* every distinct request message gets exactly one answer — its own workflow, whose id derives
  from the message's coordinates, publishes it; a redelivery of the message attaches to the same
  workflow;
* one deletion runs per record at a time: a request joins the record's running attempt, or opens
  the next one when none runs (the store's ledger decides, atomically), so a record deleted or
  failed earlier is never "burned". The request that opened an attempt runs its delete steps in
  its own workflow; a request that joined waits for that workflow and shares its outcome;
* the rows and batches an answer reports come from the audit trail, exact after any crash;
* transient trouble makes a step retry without limit; only permanent errors fail an attempt.

Written against a duck-typed durable context (`run`, `sleep`, `promise`, `get_dependency`) so
the domain does not import the runtime; the ports arrive as one `WorkflowPorts`.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import PERMANENT_ERRORS, DomainError, RecordStoreUnavailable
from .events import Events
from .evidence import Delivery
from .model import (
    Answer,
    AttemptTotals,
    BatchResult,
    RecordId,
    RequestRef,
    WorkflowParams,
    headers_as_text,
    headers_from_text,
)
from .ports import CompletionPublisher, RecordStore

REQUEST_WORKFLOW = "answer_deletion_request"
PORTS = "record_deleter.workflow_ports"


class DurableCall(Protocol):
    """What `ctx.run(...)` returns: a yieldable call that accepts per-call options."""

    def options(self, **kwargs: Any) -> DurableCall: ...


class DurableContext(Protocol):
    """The subset of the durable runtime's context the workflow uses."""

    def run(self, func: Any, *args: Any) -> DurableCall: ...

    def promise(self, *, id: str, idempotency_key: str) -> Any: ...

    def sleep(self, secs: float) -> Any: ...

    def get_dependency(self, key: str, default: Any = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class WorkflowPorts:
    """Everything the workflows and their steps reach outside themselves, handed over as one object."""

    store: RecordStore
    publisher: CompletionPublisher
    events: Events
    step_options: Mapping[str, Any]  # the runtime's per-step options (retry policy)
    namespace: str  # keeps the durable ids of one deployment apart from another's


def ports(ctx: DurableContext) -> WorkflowPorts:
    """The workflows' ports, as the runtime registered them (`PORTS`)."""
    found = ctx.get_dependency(PORTS)
    if not isinstance(found, WorkflowPorts):
        raise TypeError(f"the durable runtime must register WorkflowPorts under {PORTS!r}, got {found!r}")
    return found


def request_args(record_id: RecordId, request: RequestRef, params: WorkflowParams) -> tuple[Any, ...]:
    """The arguments `answer_request` is started with, in order (a persisted format, see above).

    Header values travel as text (`headers_as_text`) inside the JSON the runtime stores."""
    return (
        record_id.value,
        request.topic,
        request.partition,
        request.offset,
        request.timestamp,
        headers_as_text(request.headers),
        params.batch_size,
        params.pause_seconds,
        params.step_seconds,
    )


def describe_failure(exc: BaseException) -> str:
    """A reason safe to publish (a failure answer, the ledger): the errors that fail an attempt
    (PERMANENT_ERRORS) say what is wrong in words of their own — adapters never copy a driver's
    text, which can quote row values, into them (`sql_errors`); anything else only by its type."""
    if isinstance(exc, PERMANENT_ERRORS):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} (details in the worker's log)"


def _log_text(exc: BaseException) -> str:
    """An error as a log line gives it to the operator: the project's own errors with their text."""
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, DomainError) else describe_failure(exc)


# ------------------------------------------------------------------------------------ steps
def join_and_delete(
    ctx: DurableContext,
    record_id: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int | None,
    headers: list[list[str]],
    batch_size: int,
    budget_seconds: float,
) -> dict[str, Any]:
    """Step: register the request with the record's running attempt, or open the next one.

    The request that opens the attempt goes straight on to delete its first batches in this same
    step (a checkpoint fewer per record: for a small record the whole deletion). Returns
    {"attempt", "opened_by"} and, for the opener, what `delete_batches` returns, or {"error":
    reason} when its first batch met a permanent error. Re-running it is harmless: the join is
    idempotent by the request's key, and so are the batches.
    """
    p = ports(ctx)
    request = _request(topic, partition, offset, timestamp, headers)
    key = request.key(p.namespace)
    joined, first = p.store.join_and_delete(RecordId(record_id), request, key, batch_size)
    p.events.emit("joined", record_id=record_id, partition=partition, offset=offset, attempt=joined.number)
    out: dict[str, Any] = {"attempt": joined.number, "opened_by": joined.opened_by}
    if joined.opened_by != key:
        return out
    if joined.state != "running":  # a replay after the attempt closed: answer from the ledger
        totals = joined.totals or AttemptTotals(0, 0)
        if joined.state == "failed":
            return out | {"error": joined.reason or "the deletion failed"}
        return out | {
            "deleted": 0,
            "batches": 0,
            "more": False,
            "totals": [totals.rows_deleted, totals.batches],
        }
    try:
        return out | _delete(p, record_id, joined.number, batch_size, budget_seconds, first)
    except PERMANENT_ERRORS as exc:
        return out | {"error": describe_failure(exc)}


def delete_batches(
    ctx: DurableContext, record_id: str, attempt: int, batch_size: int, budget_seconds: float
) -> dict[str, Any]:
    """Step: delete a batch, then more while rows remain and `budget_seconds` have not passed.

    Every batch is its own transaction, so a crash mid-step loses only the batch in flight;
    re-running the step deletes the next rows (or none): it is idempotent, and the batches it
    re-executes number at most the one that was in flight. The budget amortizes the step's
    checkpoint over many batches; 0 means one batch per step. The batch that finds nothing left
    closes the attempt and brings its totals back.
    """
    return _delete(ports(ctx), record_id, attempt, batch_size, budget_seconds)


def _delete(
    p: WorkflowPorts,
    record_id: str,
    attempt: int,
    batch_size: int,
    budget_seconds: float,
    first: BatchResult | None = None,
) -> dict[str, Any]:
    """Batches while rows remain and the budget lasts; `first` is a batch the store already ran
    (with the join, `RecordStore.join_and_delete`)."""
    store, events = p.store, p.events
    rid = RecordId(record_id)
    deadline = time.monotonic() + budget_seconds
    deleted = batches = 0
    while True:
        try:
            result, first = first or store.delete_batch(rid, batch_size, attempt), None
        except Exception as exc:
            if batches == 0:
                events.emit("store_error", record_id=record_id, attempt=attempt, error=_log_text(exc))
                raise  # the step's retry policy takes over (without limit, unless it is permanent)
            # keep what this step achieved: checkpoint it, and let the next step meet the error
            events.emit("step_cut_short", record_id=record_id, batches=batches, rows=deleted, error=repr(exc))
            return {"deleted": deleted, "batches": batches, "more": True}
        batches += 1
        deleted += result.deleted
        events.emit("batch_deleted", record_id=record_id, rows=result.deleted, more=result.more)
        if not result.more or time.monotonic() >= deadline:
            events.emit("step_deleted", record_id=record_id, batches=batches, rows=deleted, more=result.more)
            out: dict[str, Any] = {"deleted": deleted, "batches": batches, "more": result.more}
            if result.totals is not None:
                out["totals"] = [result.totals.rows_deleted, result.totals.batches]
            return out


def fail_attempt(ctx: DurableContext, record_id: str, attempt: int, reason: str) -> list[int]:
    """Step: close the attempt as failed; returns [rows, batches] it deleted before."""
    totals = ports(ctx).store.fail_attempt(RecordId(record_id), attempt, reason)
    return [totals.rows_deleted, totals.batches]


def publish_answer(
    ctx: DurableContext,
    record_id: str,
    request: list[Any],
    attempt: int,
    totals: list[int],
    failure: str | None,
) -> None:
    """Step: publish this request's one answer; returns once the broker confirmed it and its
    coordinates are recorded (`_record_answer`: the answer is published once per run of the step)."""
    p = ports(ctx)
    ref = _request(*request)
    answer = Answer(
        RecordId(record_id), ref, attempt, AttemptTotals(totals[0], totals[1]), ref.key(p.namespace), failure
    )
    delivery = p.publisher.publish(answer)
    _record_answer(p, answer, delivery)
    p.events.emit(
        "completion_published" if failure is None else "failure_published",
        record_id=record_id,
        partition=ref.partition,
        offset=ref.offset,
        attempt=attempt,
        rows=totals[0],
        batches=totals[1],
        **({} if failure is None else {"error": failure}),
    )


ANSWER_RECORD_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # then every 10 s until the database is back


def _record_answer(p: WorkflowPorts, answer: Answer, delivery: Delivery) -> None:
    """Keep where the answer landed. The answer is already out: recording must never make the step
    fail (its retry would publish it again). A transient store error (the database down, a lock
    timeout) is retried here for as long as it lasts, as every other step waits out an outage: the
    evidence of an erasure must not lack its answer because the database failed over at that
    moment. Anything else (a bug, a schema that refuses the row) only leaves the row out, logged."""
    tries = 0
    while True:
        try:
            p.store.record_answer(answer, delivery)
            return
        except RecordStoreUnavailable as exc:
            p.events.emit(
                "store_error", record_id=answer.record_id.value, attempt=answer.attempt, error=_log_text(exc)
            )
            time.sleep(ANSWER_RECORD_DELAYS[min(tries, len(ANSWER_RECORD_DELAYS) - 1)])
            tries += 1
        except Exception as exc:
            p.events.emit(
                "answer_not_recorded",
                record_id=answer.record_id.value,
                attempt=answer.attempt,
                error=_log_text(exc),
            )
            return


def _request(
    topic: str, partition: int, offset: int, timestamp: int | None, headers: list[list[str]]
) -> RequestRef:
    return RequestRef(topic, partition, offset, timestamp, headers_from_text(headers))


# -------------------------------------------------------------------------------- workflows
def answer_request(
    ctx: DurableContext,
    record_id: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int | None,
    headers: list[list[str]],
    batch_size: int,
    pause_seconds: float,
    step_seconds: float,
) -> Generator[Any, Any, dict[str, Any]]:
    """Workflow: one request, one answer. Joins (or opens) the record's deletion attempt; runs it
    when this request opened it, else waits for the workflow of the request that did; then
    publishes the outcome for this request."""
    p = ports(ctx)
    options = p.step_options
    request: list[Any] = [topic, partition, offset, timestamp, headers]
    own_key = _request(topic, partition, offset, timestamp, headers).key(p.namespace)
    params = WorkflowParams(batch_size, pause_seconds, step_seconds)
    attempt, failure, totals = 0, None, [0, 0]
    try:
        first = yield ctx.run(
            join_and_delete, record_id, *request, params.batch_size, params.step_budget
        ).options(**options, durable=False)
        attempt, opened_by = first["attempt"], first["opened_by"]
        if opened_by == own_key:
            totals, failure = yield from _run_attempt(ctx, p, record_id, attempt, params, first)
        else:
            # A deletion under way: share its outcome instead of running a second one.
            opener = yield ctx.promise(id=opened_by, idempotency_key=opened_by)
            shared = yield opener
            totals, failure = list(shared["totals"]), shared.get("failure")
    except Exception as exc:  # the request could not join an attempt, or its opener failed oddly
        failure = describe_failure(exc)
    yield ctx.run(publish_answer, record_id, request, attempt, totals, failure).options(
        **options, durable=False
    )
    return {
        "record_id": record_id,
        "attempt": attempt,
        "deleted": failure is None,
        "totals": totals,
        "failure": failure,
    }


def _run_attempt(
    ctx: DurableContext,
    p: WorkflowPorts,
    record_id: str,
    attempt: int,
    params: WorkflowParams,
    first: dict[str, Any],
) -> Generator[Any, Any, tuple[list[int], str | None]]:
    """The rest of one attempt's deletion after its first step (`join_and_delete`): more delete
    steps while rows remain, pausing durably between them. Every yield is a checkpoint: on replay
    completed steps return their results.

    Transient errors retry inside their step without limit; a permanent one closes the attempt as
    failed, and the reason is every waiting request's answer. Returns (totals, failure).
    """
    result, reason = first, first.get("error")
    if reason is None:
        try:
            while result["more"]:
                if params.pause_seconds > 0:
                    yield ctx.sleep(params.pause_seconds)
                result = yield ctx.run(
                    delete_batches, record_id, attempt, params.batch_size, params.step_budget
                ).options(**p.step_options)
            return list(result["totals"]), None
        except Exception as exc:
            reason = describe_failure(exc)
    p.events.emit("attempt_failed", record_id=record_id, attempt=attempt, error=reason)
    totals = yield ctx.run(fail_attempt, record_id, attempt, reason).options(**p.step_options)
    return list(totals), reason
