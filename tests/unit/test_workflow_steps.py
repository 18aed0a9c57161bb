"""The workflows' durable calls, driven by a recording durable context (no runtime).

What matters here is which durable calls each workflow makes, in which order, with which ids:
each costs server round trips, and they are a persisted format (a replay must make the same
ones). The request workflow joins an attempt, starts (or attaches to) the attempt workflow under
the attempt's promise id, awaits it and publishes one answer; the attempt workflow spends its
checkpoints on delete steps (a step per batch, or batches per step within a budget).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.domain.errors import DeletionPlanInvalid, InvalidRecordId, RecordStoreUnavailable
from record_deleter.domain.events import NoEvents
from record_deleter.domain.model import (
    AttemptTotals,
    BatchResult,
    RecordId,
    RequestRef,
    WorkflowParams,
    attempt_promise_id,
)
from record_deleter.domain.workflow import (
    ATTEMPT_WORKFLOW,
    PORTS,
    WorkflowPorts,
    answer_request,
    attempt_args,
    delete_attempt,
    delete_batches,
    request_args,
)
from tests import builders

pytestmark = pytest.mark.unit

NAMESPACE = "steps"
TARGET = "poll://any@record-deleter"
COMPLETIONS, FAILURES = "done", "failed"
WORKFLOWS = {ATTEMPT_WORKFLOW: delete_attempt}  # what the runtime registers under each name


@dataclass
class Call:
    """`ctx.run(func, *args)`: a step."""

    func: Any
    args: tuple[Any, ...]
    opts: dict[str, Any] = field(default_factory=dict)

    def options(self, **kwargs: Any) -> Call:
        self.opts.update(kwargs)
        return self


@dataclass
class Detached:
    """`ctx.detached(name, *args)`: a workflow of its own, under the promise id its options give."""

    name: str
    args: tuple[Any, ...]
    opts: dict[str, Any] = field(default_factory=dict)

    def options(self, **kwargs: Any) -> Detached:
        self.opts.update(kwargs)
        return self


@dataclass
class Handle:
    """What yielding a `Detached` returns; yielding it awaits the workflow's result."""

    started: Detached

    @property
    def id(self) -> str:
        return str(self.started.opts["id"])


@dataclass
class Sleep:
    secs: float


class RecordingContext:
    """Runs each step at once (no retries: a step that raises failed beyond its retry policy, as
    only a permanent error does) and records the durable calls made. A detached workflow runs
    inline in a context of its own when awaited, once per promise id, as a durable promise would."""

    def __init__(
        self, store: Any, broker: InMemoryBroker | None = None, shared: dict[str, Any] | None = None
    ) -> None:
        self.broker = broker or new_broker()
        self.deps = {
            PORTS: WorkflowPorts(
                store,
                builders.publisher(self.broker, COMPLETIONS, FAILURES),
                NoEvents(),
                {"retry_policy": "from the runtime"},
                NAMESPACE,
                TARGET,
            ),
        }
        self.calls: list[str] = []
        self.started: list[Detached] = []
        self.children: dict[str, RecordingContext] = {} if shared is None else shared
        self.results: dict[str, Any] = {}

    # the DurableContext surface
    def run(self, func: Any, *args: Any) -> Call:
        return Call(func, args)

    def detached(self, func: Any, *args: Any) -> Detached:
        return Detached(func, args)

    def sleep(self, secs: float) -> Sleep:
        return Sleep(secs)

    def get_dependency(self, key: str, default: Any = None) -> Any:
        return self.deps.get(key, default)

    # driving
    def drive(
        self, workflow: Generator[Any, Any, Any], *, send: Any = None, stop_at_await: bool = False
    ) -> Any:
        """Run `workflow` to its end and return its result; with `stop_at_await`, return the Handle
        it awaits instead (the workflow stays suspended: resume it with `drive(..., send=...)`)."""
        value: Any = send
        error: BaseException | None = None
        while True:
            try:
                item = workflow.throw(error) if error is not None else workflow.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            if stop_at_await and isinstance(item, Handle):
                return item
            try:
                value = self.execute(item)
            except Exception as exc:
                error = exc

    def execute(self, item: Any) -> Any:
        if isinstance(item, Sleep):
            self.calls.append("sleep")
            return None
        if isinstance(item, Detached):
            self.calls.append(f"detached {item.name}")
            self.started.append(item)
            return Handle(item)
        if isinstance(item, Handle):
            self.calls.append("await")
            return self.resolve(item)
        assert isinstance(item, Call), f"the workflow yielded {item!r}, not a durable call"
        assert item.opts == {"retry_policy": "from the runtime"}, "every step runs with the runtime's options"
        self.calls.append(item.func.__name__)
        return item.func(self, *item.args)

    def resolve(self, handle: Handle) -> Any:
        if handle.id not in self.results:
            child = RecordingContext(self.deps[PORTS].store, self.broker, self.children)
            self.children[handle.id] = child
            self.results[handle.id] = child.drive(WORKFLOWS[handle.started.name](child, *handle.started.args))
        return self.results[handle.id]

    def answers(self) -> list[tuple[str, Any, dict[str, bytes]]]:
        return [
            (topic, json.loads(m.value or b"null"), dict(m.headers))
            for topic in (COMPLETIONS, FAILURES)
            for _, m in self.broker.messages(topic)
        ]


def new_broker() -> InMemoryBroker:
    broker = InMemoryBroker()
    broker.create_topic(COMPLETIONS)
    broker.create_topic(FAILURES)
    return broker


def store_with(rows: int, record_id: str = "r") -> InMemoryRecordStore:
    store = InMemoryRecordStore()
    store.add_record(RecordId(record_id), rows)
    return store


def request(offset: int, headers: tuple[tuple[str, bytes], ...] = ()) -> RequestRef:
    return RequestRef("requests", 1, offset, 1_000 + offset, headers)


def answering(
    ctx: RecordingContext, record_id: str, ref: RequestRef, params: WorkflowParams
) -> Generator[Any, Any, Any]:
    return answer_request(ctx, *request_args(RecordId(record_id), ref, params))


PARAMS = WorkflowParams(batch_size=10, pause_seconds=0, step_seconds=60)


# --- the attempt workflow: how it spends its checkpoints ------------------------------------------


def test_without_a_pause_one_step_deletes_every_batch_within_its_budget() -> None:
    ctx = RecordingContext(store_with(95))
    result = ctx.drive(delete_attempt(ctx, "r", 1, batch_size=10, pause_seconds=0, step_seconds=60))
    assert ctx.calls == ["delete_batches"]
    assert result == {"record_id": "r", "attempt": 1, "totals": [95, 10]}


def test_a_zero_budget_checkpoints_every_batch() -> None:
    ctx = RecordingContext(store_with(95))
    result = ctx.drive(delete_attempt(ctx, "r", 1, batch_size=10, pause_seconds=0, step_seconds=0))
    assert ctx.calls == ["delete_batches"] * 10
    assert result["totals"] == [95, 10]


def test_with_a_pause_every_batch_is_its_own_step_followed_by_a_durable_sleep() -> None:
    ctx = RecordingContext(store_with(25))
    result = ctx.drive(delete_attempt(ctx, "r", 1, batch_size=10, pause_seconds=1, step_seconds=60))
    assert ctx.calls == ["delete_batches", "sleep", "delete_batches", "sleep", "delete_batches"]
    assert result["totals"] == [25, 3]


def test_the_batch_that_finds_nothing_left_closes_the_attempt() -> None:
    store = store_with(20)
    ctx = RecordingContext(store)
    ctx.drive(delete_attempt(ctx, "r", 1, batch_size=10, pause_seconds=0, step_seconds=0))
    [attempt] = store.attempts(RecordId("r"))
    assert (attempt.state, attempt.totals) == ("done", AttemptTotals(20, 2))
    assert attempt.finished_at is not None


class FailingOnCall:
    """The in-memory store, whose n-th `delete_batch` calls raise `error`."""

    def __init__(self, inner: InMemoryRecordStore, *failing_calls: int, error: Exception) -> None:
        self.inner, self.failing_calls, self.error, self.calls = inner, failing_calls, error, 0

    def join_attempt(self, record_id: RecordId, request: RequestRef, request_key: str) -> int:
        return self.inner.join_attempt(record_id, request, request_key)

    def delete_batch(self, record_id: RecordId, batch_size: int, attempt: int) -> BatchResult:
        self.calls += 1
        if self.calls in self.failing_calls:
            raise self.error
        return self.inner.delete_batch(record_id, batch_size, attempt)

    def fail_attempt(self, record_id: RecordId, attempt: int, reason: str) -> AttemptTotals:
        return self.inner.fail_attempt(record_id, attempt, reason)


TRANSIENT = RecordStoreUnavailable("database unavailable: connection reset")
PERMANENT = DeletionPlanInvalid("deletion plan names table 'nope', which does not exist")


def test_a_failure_after_some_batches_checkpoints_them_before_the_error_surfaces() -> None:
    store = FailingOnCall(store_with(50), 3, error=TRANSIENT)
    ctx = RecordingContext(store)
    assert delete_batches(ctx, "r", 1, 10, 60) == {"deleted": 20, "batches": 2, "more": True}
    assert delete_batches(ctx, "r", 1, 10, 60) == {
        "deleted": 30,
        "batches": 3,
        "more": False,
        "totals": [50, 5],
    }


def test_a_failure_on_a_steps_first_batch_is_raised_for_the_retry_policy() -> None:
    store = FailingOnCall(store_with(50), 1, error=TRANSIENT)
    ctx = RecordingContext(store)
    with pytest.raises(RecordStoreUnavailable):
        delete_batches(ctx, "r", 1, 10, 60)


def test_a_permanent_error_closes_the_attempt_as_failed_with_what_it_deleted() -> None:
    """The attempt workflow resolves (it is not rejected) with the reason, for every waiting request."""
    inner = store_with(50)
    store = FailingOnCall(inner, 3, 4, error=PERMANENT)
    ctx = RecordingContext(store)
    result = ctx.drive(delete_attempt(ctx, "r", 1, batch_size=10, pause_seconds=0, step_seconds=60))
    # step 1 kept its 2 batches; step 2 failed on its first batch: the attempt is closed as failed
    assert ctx.calls == ["delete_batches", "delete_batches", "fail_attempt"]
    assert result["totals"] == [20, 2]
    assert result["failure"].startswith("DeletionPlanInvalid: ")
    assert "'nope'" in result["failure"]
    [attempt] = inner.attempts(RecordId("r"))
    assert (attempt.state, attempt.reason) == ("failed", result["failure"])
    assert inner.count_rows(RecordId("r")) == 30


# --- the request workflow: one request, one answer ------------------------------------------------


def test_a_request_joins_an_attempt_starts_it_detached_awaits_it_and_answers_once() -> None:
    store = store_with(25)
    ctx = RecordingContext(store)
    ref = request(7, (("traceparent", b"00-abc-01"),))

    result = ctx.drive(answering(ctx, "r", ref, PARAMS))

    assert ctx.calls == ["join_attempt", f"detached {ATTEMPT_WORKFLOW}", "await", "publish_answer"]
    [started] = ctx.started
    assert started.opts == {"id": attempt_promise_id(NAMESPACE, RecordId("r"), 1), "target": TARGET}
    assert started.args == attempt_args("r", 1, PARAMS)
    assert result == {"record_id": "r", "attempt": 1, "deleted": True, "totals": [25, 3]}
    [(topic, value, headers)] = ctx.answers()
    assert (topic, value) == (COMPLETIONS, ["r", 7])
    assert headers["traceparent"] == b"00-abc-01"
    assert headers["idempotency-key"] == ref.key(NAMESPACE).encode()
    assert (headers["rows-deleted"], headers["batches"], headers["attempt"]) == (b"25", b"3", b"1")


def test_a_request_whose_attempt_failed_answers_on_the_failure_topic() -> None:
    ctx = RecordingContext(FailingOnCall(store_with(30), 1, error=PERMANENT))

    result = ctx.drive(answering(ctx, "r", request(4), PARAMS))

    assert ctx.calls == ["join_attempt", f"detached {ATTEMPT_WORKFLOW}", "await", "publish_answer"]
    assert result == {"record_id": "r", "attempt": 1, "deleted": False, "totals": [0, 0]}
    [(topic, value, _)] = ctx.answers()
    assert topic == FAILURES
    assert (value["record_id"], value["offset"], value["attempt"]) == ("r", 4, 1)
    assert value["error"].startswith("DeletionPlanInvalid: ")


class RefusingJoin:
    """A store that cannot even register the request (a permanent error on the join)."""

    def join_attempt(self, record_id: RecordId, request: RequestRef, request_key: str) -> int:
        raise InvalidRecordId("record id is 300 characters long; at most 128 are allowed")


def test_a_request_that_cannot_join_an_attempt_still_gets_its_one_answer() -> None:
    ctx = RecordingContext(RefusingJoin())

    result = ctx.drive(answering(ctx, "r", request(9), PARAMS))

    assert ctx.calls == ["join_attempt", "publish_answer"], "no attempt is started"
    assert result == {"record_id": "r", "attempt": 0, "deleted": False, "totals": [0, 0]}
    [(topic, value, headers)] = ctx.answers()
    assert topic == FAILURES
    assert value["error"].startswith("InvalidRecordId: ")
    assert headers["request-offset"] == b"9"


def test_requests_joined_while_an_attempt_runs_await_the_same_attempt_and_answer_each() -> None:
    store = store_with(30)
    ctx = RecordingContext(store)
    first = answering(ctx, "r", request(1), PARAMS)
    second = answering(ctx, "r", request(2), PARAMS)

    first_awaits = ctx.drive(first, stop_at_await=True)
    second_awaits = ctx.drive(second, stop_at_await=True)  # arrives while attempt 1 runs

    assert first_awaits.id == second_awaits.id == attempt_promise_id(NAMESPACE, RecordId("r"), 1)
    [attempt] = store.attempts(RecordId("r"))
    assert (attempt.state, attempt.requests) == ("running", 2)
    outcome = ctx.resolve(first_awaits)
    assert ctx.drive(first, send=outcome)["totals"] == ctx.drive(second, send=outcome)["totals"] == [30, 3]

    assert [(value, headers["attempt"]) for _, value, headers in ctx.answers()] == [
        (["r", 1], b"1"),
        (["r", 2], b"1"),
    ]
    assert [d.opts["id"] for d in ctx.started] == [first_awaits.id] * 2, (
        "both start the attempt under one promise id: the runtime runs it once"
    )


def test_a_request_after_the_attempt_finished_opens_the_next_attempt() -> None:
    store = store_with(30)
    ctx = RecordingContext(store)
    ctx.drive(answering(ctx, "r", request(1), PARAMS))
    store.add_record(RecordId("r"), 5)

    result = ctx.drive(answering(ctx, "r", request(2), PARAMS))

    assert result == {"record_id": "r", "attempt": 2, "deleted": True, "totals": [5, 1]}
    assert [d.opts["id"] for d in ctx.started] == [
        attempt_promise_id(NAMESPACE, RecordId("r"), 1),
        attempt_promise_id(NAMESPACE, RecordId("r"), 2),
    ]
    assert [a.state for a in store.attempts(RecordId("r"))] == ["done", "done"]


def test_replaying_a_request_joins_the_same_attempt() -> None:
    """A replay (a crash before the join's checkpoint) re-runs the join: same request key, same attempt."""
    store = store_with(30)
    ctx = RecordingContext(store)
    ref = request(3)
    first = answering(ctx, "r", ref, PARAMS)
    ctx.drive(first, stop_at_await=True)

    replay = RecordingContext(store, ctx.broker)
    handle = replay.drive(answering(replay, "r", ref, PARAMS), stop_at_await=True)

    assert handle.id == attempt_promise_id(NAMESPACE, RecordId("r"), 1)
    [attempt] = store.attempts(RecordId("r"))
    assert attempt.requests == 1, "the request is counted once"


def test_request_headers_survive_the_stored_arguments_byte_for_byte() -> None:
    """Header values travel as text in the stored arguments; every byte value comes back."""
    ctx = RecordingContext(store_with(5))
    raw = bytes(range(256))
    args = request_args(RecordId("r"), request(0, (("binary", raw),)), PARAMS)
    json.dumps(args)  # the runtime stores the arguments as JSON

    ctx.drive(answer_request(ctx, *json.loads(json.dumps(args))))

    [(_, _, headers)] = ctx.answers()
    assert headers["binary"] == raw
