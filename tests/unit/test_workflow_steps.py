"""The request workflow's durable calls, driven by a recording durable context (no runtime).

What matters here is which durable calls the workflow makes, in which order, with which ids, and
what it publishes: each call costs server round trips, and they are a persisted format (a replay
must make the same ones). A request joins the record's attempt (`join_and_delete`); the request
that opened it runs the deletion itself: its first batches in that same step, then delete steps
while rows remain (a step per batch, or batches per step within a budget); a request that joined
awaits the opener's workflow through its durable promise (the opener's request key) and shares its
outcome; every request publishes exactly one answer.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.domain.errors import (
    PERMANENT_ERRORS,
    DeletionPlanInvalid,
    DeletionRejected,
    InvalidRecordId,
    RecordStoreUnavailable,
)
from record_deleter.domain.model import (
    AttemptTotals,
    BatchResult,
    JoinedAttempt,
    RecordId,
    RequestRef,
    WorkflowParams,
)
from record_deleter.domain.ports import RecordStore
from record_deleter.domain.workflow import (
    PORTS,
    WorkflowPorts,
    answer_request,
    delete_batches,
    join_and_delete,
    request_args,
)
from tests import builders

pytestmark = pytest.mark.unit

NAMESPACE = "steps"
COMPLETIONS, FAILURES = "done", "failed"
STEP_OPTIONS = {"retry_policy": "from the runtime"}
PARAMS = WorkflowParams(batch_size=10, pause_seconds=0, step_seconds=60)
# One batch per step: an opener of a record of several batches is still running its attempt after
# `join_and_delete` (which deleted the first batch), so another request can join it.
BATCH_PER_STEP = WorkflowParams(batch_size=10, pause_seconds=0, step_seconds=0)


# --- the recording durable context ----------------------------------------------------------------


@dataclass
class Call:
    """`ctx.run(func, *args)`: a step."""

    func: Any
    args: tuple[Any, ...]
    opts: dict[str, Any] = field(default_factory=dict)

    def options(self, **kwargs: Any) -> Call:
        self.opts.update(kwargs)
        return self


@dataclass(frozen=True)
class Sleep:
    """`ctx.sleep(secs)`: a durable sleep."""

    secs: float


@dataclass(frozen=True)
class Promise:
    """`ctx.promise(id=..., idempotency_key=...)`: yielding it gives a `Handle` on that promise."""

    id: str
    idempotency_key: str


@dataclass(frozen=True)
class Handle:
    """Yielding it awaits the promise: the result of the workflow registered under its id."""

    id: str


class RecordingEvents:
    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, object]]] = []

    def emit(self, event: str, **fields: object) -> None:
        self.emitted.append((event, fields))

    def named(self, event: str) -> list[dict[str, object]]:
        return [fields for name, fields in self.emitted if name == event]


class Promises:
    """The durable promises of one test, by id: the request workflows started under their request
    key (each driven inline, in a recording context of its own, and run to its end once per id, as
    a durable promise would), and canned results (a workflow that runs elsewhere; an exception
    stands for a rejected promise). Arguments go through JSON, as the runtime stores them."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.broker = InMemoryBroker()
        self.broker.create_topic(COMPLETIONS)
        self.broker.create_topic(FAILURES)
        self.events = RecordingEvents()
        self.runs: dict[str, Run] = {}
        self.canned: dict[str, Any] = {}

    def start(self, ref: RequestRef, record_id: str = "r", params: WorkflowParams = PARAMS) -> Run:
        key = ref.key(NAMESPACE)
        assert key not in self.runs.keys() | self.canned.keys(), "one workflow per request key"
        stored = json.loads(json.dumps(request_args(RecordId(record_id), ref, params)))
        self.runs[key] = run = Run(self, key, stored)
        return run

    def replay(self, run: Run) -> Run:
        """The same workflow from its stored arguments in a fresh context (its checkpoints lost)."""
        return Run(self, run.key, run.stored)

    def result(self, id: str) -> Any:
        if id in self.canned:
            outcome = self.canned[id]
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        assert id in self.runs, f"no workflow under the promise id {id!r}"
        return self.runs[id].finish()

    def answers(self) -> list[tuple[str, Any, dict[str, bytes]]]:
        """What was published (completions, then failures, each in order): (topic, value, headers)."""
        return [
            (topic, json.loads(m.value or b"null"), dict(m.headers))
            for topic in (COMPLETIONS, FAILURES)
            for _, m in self.broker.messages(topic)
        ]


class RecordingContext:
    """The DurableContext surface. Runs each step at once (no retries: a step that raises failed
    beyond its retry policy, as only a permanent error does) and records the durable calls made."""

    def __init__(self, promises: Promises) -> None:
        self.promises = promises
        self.deps = {
            PORTS: WorkflowPorts(
                promises.store,
                builders.publisher(promises.broker, COMPLETIONS, FAILURES),
                promises.events,
                STEP_OPTIONS,
                NAMESPACE,
            ),
        }
        self.calls: list[str] = []
        self.ledger_checkpointed: list[str] = []  # steps run without a checkpoint of their own
        self.slept: list[float] = []
        self.promised: list[Promise] = []

    def run(self, func: Any, *args: Any) -> Call:
        return Call(func, args)

    def sleep(self, secs: float) -> Sleep:
        return Sleep(secs)

    def promise(self, *, id: str, idempotency_key: str) -> Promise:
        return Promise(id, idempotency_key)

    def get_dependency(self, key: str, default: Any = None) -> Any:
        return self.deps.get(key, default)

    def execute(self, item: Any) -> Any:
        if isinstance(item, Sleep):
            self.calls.append("sleep")
            self.slept.append(item.secs)
            return None
        if isinstance(item, Promise):
            self.calls.append(f"promise {item.id}")
            self.promised.append(item)
            return Handle(item.id)
        if isinstance(item, Handle):
            self.calls.append("await")
            return self.promises.result(item.id)
        assert isinstance(item, Call), f"the workflow yielded {item!r}, not a durable call"
        opts = dict(item.opts)
        durable = opts.pop("durable", True)
        assert opts == STEP_OPTIONS, "every step runs with the runtime's options"
        self.calls.append(item.func.__name__)
        if not durable:
            self.ledger_checkpointed.append(item.func.__name__)
        return item.func(self, *item.args)


class Run:
    """One request workflow (`answer_request`), driven a durable call at a time."""

    def __init__(self, promises: Promises, key: str, stored: list[Any]) -> None:
        self.key, self.stored = key, stored
        self.ctx = RecordingContext(promises)
        self._workflow: Generator[Any, Any, Any] = answer_request(self.ctx, *stored)
        self._value: Any = None
        self._error: Exception | None = None
        self.done = False
        self.result: Any = None

    @property
    def calls(self) -> list[str]:
        return self.ctx.calls

    def advance(self) -> bool:
        """Make the next durable call; False once the workflow has returned."""
        if self.done:
            return False
        try:
            if self._error is not None:
                item = self._workflow.throw(self._error)
            else:
                item = self._workflow.send(self._value)
        except StopIteration as stop:
            self.done, self.result = True, stop.value
            return False
        self._value, self._error = None, None
        try:
            self._value = self.ctx.execute(item)
        except Exception as exc:
            self._error = exc
        return True

    def until(self, call: str) -> Any:
        """Advance until `call` was made (the workflow stays suspended after it); returns its result."""
        while self.advance():
            if self.calls[-1] == call:
                if self._error is not None:
                    raise self._error
                return self._value
        raise AssertionError(f"the workflow returned without making {call!r}: {self.calls}")

    def finish(self) -> Any:
        while self.advance():
            pass
        return self.result


def store_with(rows: int, record_id: str = "r") -> InMemoryRecordStore:
    store = InMemoryRecordStore()
    store.add_record(RecordId(record_id), rows)
    return store


def request(offset: int, headers: tuple[tuple[str, bytes], ...] = ()) -> RequestRef:
    return RequestRef("requests", 1, offset, 1_000 + offset, headers)


def completed(attempt: int, totals: list[int]) -> dict[str, Any]:
    """The request workflow's result when record "r" was deleted."""
    return {"record_id": "r", "attempt": attempt, "deleted": True, "totals": totals, "failure": None}


class FailingOnCall(RecordStore):
    """The in-memory store, whose n-th `delete_batch` calls raise `error`."""

    def __init__(self, inner: InMemoryRecordStore, *failing_calls: int, error: Exception) -> None:
        self.inner, self.failing_calls, self.error, self.calls = inner, failing_calls, error, 0

    def join_attempt(self, record_id: RecordId, request: RequestRef, request_key: str) -> JoinedAttempt:
        return self.inner.join_attempt(record_id, request, request_key)

    def delete_batch(self, record_id: RecordId, batch_size: int, attempt: int) -> BatchResult:
        self.calls += 1
        if self.calls in self.failing_calls:
            raise self.error
        return self.inner.delete_batch(record_id, batch_size, attempt)

    def fail_attempt(self, record_id: RecordId, attempt: int, reason: str) -> AttemptTotals:
        return self.inner.fail_attempt(record_id, attempt, reason)


class RefusingJoin(RecordStore):
    """A store that cannot even register the request (a permanent error on the join)."""

    def join_attempt(self, record_id: RecordId, request: RequestRef, request_key: str) -> JoinedAttempt:
        raise InvalidRecordId("record id is 300 characters long; at most 128 are allowed")


def joined(attempt: int, opener: RequestRef, **first_step: Any) -> dict[str, Any]:
    """What `join_and_delete` returns: the attempt and the key of the request that opened it, and,
    when this request is that opener, what its first batches did (or the error they met)."""
    return {"attempt": attempt, "opened_by": opener.key(NAMESPACE), **first_step}


TRANSIENT = RecordStoreUnavailable("database unavailable: connection reset")
PERMANENT = DeletionPlanInvalid("deletion plan names table 'nope', which does not exist")
ONE_STEP = ["join_and_delete", "publish_answer"]  # an opener whose whole deletion fit its first step
# an opener of 30 rows at BATCH_PER_STEP: the first batch in the join's step, then one step per batch
THREE_STEPS = ["join_and_delete", "delete_batches", "delete_batches", "publish_answer"]


# --- the opener: how it spends its checkpoints ----------------------------------------------------


def test_without_a_pause_one_step_deletes_every_batch_within_its_budget() -> None:
    """A record that fits the budget costs one step: the join's own, which closes the attempt."""
    store = store_with(95)
    run = Promises(store).start(request(1), params=WorkflowParams(10, 0, 60))
    first = joined(1, request(1), deleted=95, batches=10, more=False, totals=[95, 10])
    assert run.until("join_and_delete") == first
    [attempt] = store.attempts(RecordId("r"))
    assert (attempt.state, attempt.totals) == ("done", AttemptTotals(95, 10))
    assert run.finish() == completed(1, [95, 10])
    assert run.calls == ONE_STEP


def test_a_zero_budget_checkpoints_every_batch() -> None:
    run = Promises(store_with(95)).start(request(1), params=BATCH_PER_STEP)
    assert run.until("join_and_delete") == joined(1, request(1), deleted=10, batches=1, more=True)
    assert run.finish() == completed(1, [95, 10])
    assert run.calls == ["join_and_delete", *["delete_batches"] * 9, "publish_answer"]


def test_with_a_pause_every_batch_is_its_own_step_followed_by_a_durable_sleep() -> None:
    """A pause zeroes the step budget, whatever `step_seconds` says (the join's step included); no
    sleep after the last batch."""
    run = Promises(store_with(25)).start(request(1), params=WorkflowParams(10, 1.5, 60))
    assert run.until("join_and_delete") == joined(1, request(1), deleted=10, batches=1, more=True)
    assert run.finish() == completed(1, [25, 3])
    assert run.calls == [
        "join_and_delete",
        "sleep",
        "delete_batches",
        "sleep",
        "delete_batches",
        "publish_answer",
    ]
    assert run.ctx.slept == [1.5, 1.5]


def test_the_batch_that_finds_nothing_left_closes_the_attempt() -> None:
    store = store_with(20)
    run = Promises(store).start(request(1), params=BATCH_PER_STEP)
    assert run.until("join_and_delete") == joined(1, request(1), deleted=10, batches=1, more=True)
    [attempt] = store.attempts(RecordId("r"))
    assert (attempt.state, attempt.finished_at) == ("running", None)

    assert run.until("delete_batches") == {"deleted": 10, "batches": 1, "more": False, "totals": [20, 2]}
    [attempt] = store.attempts(RecordId("r"))
    assert (attempt.state, attempt.totals) == ("done", AttemptTotals(20, 2))
    assert attempt.finished_at is not None
    assert run.finish() == completed(1, [20, 2])
    assert run.calls == ["join_and_delete", "delete_batches", "publish_answer"]


def test_a_record_without_rows_is_one_empty_batch_and_a_completion() -> None:
    promises = Promises(InMemoryRecordStore())
    run = promises.start(request(1))
    assert run.until("join_and_delete") == joined(
        1, request(1), deleted=0, batches=1, more=False, totals=[0, 1]
    )
    assert run.finish() == completed(1, [0, 1])
    assert run.calls == ONE_STEP
    assert [topic for topic, _, _ in promises.answers()] == [COMPLETIONS]


def test_a_failure_after_some_batches_checkpoints_them_before_the_error_surfaces() -> None:
    promises = Promises(FailingOnCall(store_with(50), 3, error=TRANSIENT))
    ctx = RecordingContext(promises)
    assert delete_batches(ctx, "r", 1, 10, 60) == {"deleted": 20, "batches": 2, "more": True}
    assert promises.events.named("step_cut_short") == [
        {"record_id": "r", "batches": 2, "rows": 20, "error": repr(TRANSIENT)}
    ]
    assert delete_batches(ctx, "r", 1, 10, 60) == {
        "deleted": 30,
        "batches": 3,
        "more": False,
        "totals": [50, 5],
    }


def test_a_failure_on_a_steps_first_batch_is_raised_for_the_retry_policy() -> None:
    promises = Promises(FailingOnCall(store_with(50), 1, error=TRANSIENT))
    with pytest.raises(RecordStoreUnavailable):
        delete_batches(RecordingContext(promises), "r", 1, 10, 60)
    assert [f["error"] for f in promises.events.named("store_error")] == [
        "RecordStoreUnavailable: database unavailable: connection reset"
    ]


def test_a_transient_failure_on_the_openers_first_batch_is_raised_and_the_retry_joins_again() -> None:
    """The join's step raises a transient error its first batch met (the retry policy re-runs the
    step without limit): the join it made is kept, so the re-run finds the same attempt by the
    request's key, is its opener again, and deletes; the request is registered once."""
    inner = store_with(50)
    promises = Promises(FailingOnCall(inner, 1, error=TRANSIENT))
    ctx = RecordingContext(promises)
    ref = request(1)
    args = (*request_args(RecordId("r"), ref, PARAMS)[:6], PARAMS.batch_size, PARAMS.step_budget)

    with pytest.raises(RecordStoreUnavailable):
        join_and_delete(ctx, *args)
    assert [f["error"] for f in promises.events.named("store_error")] == [
        "RecordStoreUnavailable: database unavailable: connection reset"
    ]
    [attempt] = inner.attempts(RecordId("r"))
    assert (attempt.state, attempt.requests, attempt.totals) == ("running", 1, AttemptTotals(0, 0))
    assert inner.count_rows(RecordId("r")) == 50

    assert join_and_delete(ctx, *args) == joined(1, ref, deleted=50, batches=5, more=False, totals=[50, 5])
    [attempt] = inner.attempts(RecordId("r"))
    assert (attempt.state, attempt.requests, attempt.totals) == ("done", 1, AttemptTotals(50, 5))
    assert [f["attempt"] for f in promises.events.named("joined")] == [1, 1]


def test_a_step_cut_short_is_checkpointed_and_the_next_step_goes_on() -> None:
    """The step keeps (returns, so the runtime checkpoints) the batches it did before the error —
    here the join's own step; the attempt goes on with a new step, and the totals come from the
    audit trail."""
    store = FailingOnCall(store_with(50), 3, error=TRANSIENT)
    run = Promises(store).start(request(1))
    assert run.until("join_and_delete") == joined(1, request(1), deleted=20, batches=2, more=True)
    assert run.until("delete_batches") == {"deleted": 30, "batches": 3, "more": False, "totals": [50, 5]}
    assert run.finish() == completed(1, [50, 5])
    assert run.calls == ["join_and_delete", "delete_batches", "publish_answer"]


def test_a_permanent_error_closes_the_attempt_as_failed_with_what_it_deleted() -> None:
    inner = store_with(50)
    promises = Promises(FailingOnCall(inner, 3, 4, error=PERMANENT))
    run = promises.start(request(4))

    result = run.finish()

    # the join's step kept its 2 batches; the next step failed on its first batch: the attempt is
    # closed as failed
    assert run.calls == ["join_and_delete", "delete_batches", "fail_attempt", "publish_answer"]
    reason = result["failure"]
    assert reason.startswith("DeletionPlanInvalid: ")
    assert "'nope'" in reason
    assert result == {"record_id": "r", "attempt": 1, "deleted": False, "totals": [20, 2], "failure": reason}
    [attempt] = inner.attempts(RecordId("r"))
    assert (attempt.state, attempt.reason, attempt.totals) == ("failed", reason, AttemptTotals(20, 2))
    assert inner.count_rows(RecordId("r")) == 30
    assert promises.events.named("attempt_failed") == [{"record_id": "r", "attempt": 1, "error": reason}]
    [(topic, value, headers)] = promises.answers()
    assert topic == FAILURES
    assert value == {
        "record_id": "r",
        "offset": 4,
        "error": reason,
        "rows_deleted": 20,
        "batches": 2,
        "attempt": 1,
    }
    assert (headers["rows-deleted"], headers["batches"], headers["attempt"]) == (b"20", b"2", b"1")


@pytest.mark.parametrize(
    "error",
    [
        PERMANENT,
        DeletionRejected("delete refused by a foreign key constraint"),
        InvalidRecordId("record id is not valid for this plan"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_permanent_error_on_the_openers_first_batch_fails_the_attempt(error: Exception) -> None:
    """Met inside `join_and_delete`, a permanent error does not fail the step (that would lose the
    join): the step returns it, and the workflow closes the attempt as failed and answers so."""
    assert isinstance(error, PERMANENT_ERRORS)
    inner = store_with(50)
    promises = Promises(FailingOnCall(inner, 1, error=error))
    run = promises.start(request(4))

    first = run.until("join_and_delete")
    result = run.finish()

    reason = result["failure"]
    assert reason == f"{type(error).__name__}: {error}"
    assert first == joined(1, request(4), error=reason)
    assert run.calls == ["join_and_delete", "fail_attempt", "publish_answer"]
    assert result == {"record_id": "r", "attempt": 1, "deleted": False, "totals": [0, 0], "failure": reason}
    [attempt] = inner.attempts(RecordId("r"))
    assert (attempt.state, attempt.reason, attempt.totals) == ("failed", reason, AttemptTotals(0, 0))
    assert (attempt.requests, inner.count_rows(RecordId("r"))) == (1, 50)
    assert [f["error"] for f in promises.events.named("store_error")] == [reason]
    assert promises.events.named("attempt_failed") == [{"record_id": "r", "attempt": 1, "error": reason}]
    [(topic, value, headers)] = promises.answers()
    assert topic == FAILURES
    assert value == {
        "record_id": "r",
        "offset": 4,
        "error": reason,
        "rows_deleted": 0,
        "batches": 0,
        "attempt": 1,
    }
    assert (headers["rows-deleted"], headers["batches"], headers["attempt"]) == (b"0", b"0", b"1")


# --- one request, one answer: the opener and the joiners ------------------------------------------


def test_the_opener_joins_deletes_itself_and_answers_once_without_a_promise() -> None:
    promises = Promises(store_with(25))
    ref = request(7, (("traceparent", b"00-abc-01"),))
    run = promises.start(ref)

    first = run.until("join_and_delete")
    assert first == joined(1, ref, deleted=25, batches=3, more=False, totals=[25, 3]), (
        "the request opened attempt 1 and deleted the record in the join's step"
    )
    result = run.finish()

    assert run.calls == ONE_STEP
    assert run.ctx.promised == []
    assert result == completed(1, [25, 3])
    [(topic, value, headers)] = promises.answers()
    assert (topic, value) == (COMPLETIONS, ["r", 7])
    assert headers["traceparent"] == b"00-abc-01"
    assert headers["idempotency-key"] == ref.key(NAMESPACE).encode()
    assert (headers["rows-deleted"], headers["batches"], headers["attempt"]) == (b"25", b"3", b"1")


def test_a_joiner_awaits_the_openers_workflow_and_answers_with_its_totals() -> None:
    store = store_with(30)
    promises = Promises(store)
    opener = promises.start(request(1), params=BATCH_PER_STEP)
    opener_key = request(1).key(NAMESPACE)
    # attempt 1 runs; the opener deleted its first batch and is suspended before its next step
    assert opener.until("join_and_delete") == joined(1, request(1), deleted=10, batches=1, more=True)

    joiner = promises.start(request(2))
    assert joiner.until("join_and_delete") == joined(1, request(1)), "a joiner deletes nothing"
    assert store.count_rows(RecordId("r")) == 20
    [attempt] = store.attempts(RecordId("r"))
    assert (attempt.state, attempt.requests) == ("running", 2)
    result = joiner.finish()

    assert joiner.calls == ["join_and_delete", f"promise {opener_key}", "await", "publish_answer"]
    assert joiner.ctx.promised == [Promise(opener_key, opener_key)]
    assert result == completed(1, [30, 3])
    assert opener.done, "awaiting the promise ran the opener's workflow to its end"
    assert opener.calls == THREE_STEPS
    assert opener.result == completed(1, [30, 3])
    assert store.batches_done(RecordId("r")) == 3, "one deletion for both requests"
    assert [(value, headers["attempt"]) for _, value, headers in promises.answers()] == [
        (["r", 1], b"1"),
        (["r", 2], b"1"),
    ]


def test_every_joiner_awaits_the_one_opener_which_runs_once() -> None:
    store = store_with(30)
    promises = Promises(store)
    opener = promises.start(request(1), params=BATCH_PER_STEP)
    opener.until("join_and_delete")
    joiners = [promises.start(request(offset)) for offset in (2, 3)]
    for joiner in joiners:
        assert joiner.until("join_and_delete") == joined(1, request(1))

    results = [joiner.finish() for joiner in joiners]
    assert opener.finish() == completed(1, [30, 3])

    assert results == [completed(1, [30, 3])] * 2
    assert opener.calls == THREE_STEPS
    assert store.batches_done(RecordId("r")) == 3
    assert [value for _, value, _ in promises.answers()] == [["r", 1], ["r", 2], ["r", 3]]


def test_a_joiner_of_a_failed_attempt_answers_with_the_failure() -> None:
    """The attempt fails after the joiner joined: the opener's next step meets a permanent error."""
    inner = store_with(30)
    promises = Promises(FailingOnCall(inner, 2, error=PERMANENT))
    opener = promises.start(request(1), params=BATCH_PER_STEP)
    assert opener.until("join_and_delete") == joined(1, request(1), deleted=10, batches=1, more=True)
    joiner = promises.start(request(2))

    result = joiner.finish()

    assert joiner.calls == [
        "join_and_delete",
        f"promise {request(1).key(NAMESPACE)}",
        "await",
        "publish_answer",
    ]
    assert opener.calls == ["join_and_delete", "delete_batches", "fail_attempt", "publish_answer"]
    reason = opener.result["failure"]
    assert reason.startswith("DeletionPlanInvalid: ")
    assert result == {"record_id": "r", "attempt": 1, "deleted": False, "totals": [10, 1], "failure": reason}
    assert [(topic, value["offset"], value["error"]) for topic, value, _ in promises.answers()] == [
        (FAILURES, 1, reason),
        (FAILURES, 2, reason),
    ]
    assert len(promises.events.named("attempt_failed")) == 1, "only the opener fails the attempt"


def test_a_joiner_takes_the_outcome_of_an_opener_that_ran_elsewhere() -> None:
    """The promise's result is all a joiner reads: here a canned one, of a workflow not driven here."""
    store = store_with(30)
    elsewhere = request(1)
    store.join_attempt(RecordId("r"), elsewhere, elsewhere.key(NAMESPACE))
    promises = Promises(store)
    promises.canned[elsewhere.key(NAMESPACE)] = {"totals": [30, 4], "failure": None}

    joiner = promises.start(request(2))

    assert joiner.finish() == completed(1, [30, 4])
    assert joiner.calls == [
        "join_and_delete",
        f"promise {elsewhere.key(NAMESPACE)}",
        "await",
        "publish_answer",
    ]
    assert store.count_rows(RecordId("r")) == 30, "the joiner deletes nothing itself"
    [(topic, _, headers)] = promises.answers()
    assert (topic, headers["rows-deleted"], headers["batches"]) == (COMPLETIONS, b"30", b"4")


def test_a_joiner_whose_openers_promise_was_rejected_still_answers_once() -> None:
    store = store_with(30)
    elsewhere = request(1)
    store.join_attempt(RecordId("r"), elsewhere, elsewhere.key(NAMESPACE))
    promises = Promises(store)
    promises.canned[elsewhere.key(NAMESPACE)] = RuntimeError("the opener's workflow was rejected")

    result = promises.start(request(2)).finish()

    assert result == {
        "record_id": "r",
        "attempt": 1,
        "deleted": False,
        "totals": [0, 0],
        "failure": "RuntimeError (details in the worker's log)",
    }
    [(topic, value, _)] = promises.answers()
    assert (topic, value["error"]) == (FAILURES, "RuntimeError (details in the worker's log)")


def test_a_request_that_cannot_join_an_attempt_still_gets_its_one_answer() -> None:
    promises = Promises(RefusingJoin())
    run = promises.start(request(9))

    result = run.finish()

    assert run.calls == ["join_and_delete", "publish_answer"], "no attempt is run, failed or awaited"
    assert result["failure"].startswith("InvalidRecordId: ")
    assert result == {
        "record_id": "r",
        "attempt": 0,
        "deleted": False,
        "totals": [0, 0],
        "failure": result["failure"],
    }
    [(topic, value, headers)] = promises.answers()
    assert topic == FAILURES
    assert value["error"] == result["failure"]
    assert (headers["request-offset"], headers["attempt"]) == (b"9", b"0")


def test_a_request_after_the_attempt_finished_opens_the_next_attempt() -> None:
    store = store_with(30)
    promises = Promises(store)
    assert promises.start(request(1)).finish() == completed(1, [30, 3])
    store.add_record(RecordId("r"), 5)

    second = promises.start(request(2))

    first = second.until("join_and_delete")
    assert first == joined(2, request(2), deleted=5, batches=1, more=False, totals=[5, 1]), (
        "it opened attempt 2"
    )
    assert second.finish() == completed(2, [5, 1])
    assert second.calls == ONE_STEP, "it runs attempt 2 itself"
    assert [(a.state, a.totals) for a in store.attempts(RecordId("r"))] == [
        ("done", AttemptTotals(30, 3)),
        ("done", AttemptTotals(5, 1)),
    ]


def test_replaying_the_join_gives_the_same_attempt() -> None:
    """A replay (a crash before the join's checkpoint) re-runs the join with the same request key:
    same attempt, counted once, and the same opener — so the opener's replay runs the attempt
    itself again (its batches go on from the rows left) instead of awaiting its own promise, and a
    joiner's replay awaits the same one, deleting nothing."""
    store = store_with(50)
    promises = Promises(store)
    opener = promises.start(request(1), params=BATCH_PER_STEP)
    joiner = promises.start(request(2), params=BATCH_PER_STEP)
    assert opener.until("join_and_delete") == joined(1, request(1), deleted=10, batches=1, more=True)
    assert joiner.until("join_and_delete") == joined(1, request(1))

    assert promises.replay(opener).until("join_and_delete") == joined(
        1, request(1), deleted=10, batches=1, more=True
    )
    assert store.count_rows(RecordId("r")) == 30, "the replay deleted the next batch, not the same one"
    assert promises.replay(joiner).until("join_and_delete") == joined(1, request(1))
    assert store.count_rows(RecordId("r")) == 30
    [attempt] = store.attempts(RecordId("r"))
    assert (attempt.state, attempt.requests) == ("running", 2), "each request is counted once"

    replayed = promises.replay(opener)
    assert replayed.finish() == completed(1, [50, 5])
    assert replayed.calls == ["join_and_delete", "delete_batches", "delete_batches", "publish_answer"]
    assert replayed.ctx.promised == []


def test_the_first_step_and_the_answer_are_checkpointed_by_the_ledger_not_the_runtime() -> None:
    """Only the steps whose re-run the ledger makes harmless go without a promise of their own:
    the join (idempotent by the request's key) and the answer (the same bytes again); the batches
    after the first step, a failure's closing and the pauses keep their checkpoints."""
    run = Promises(store_with(30)).start(request(1), params=WorkflowParams(10, 0.5, 0))
    assert run.finish() == completed(1, [30, 3])
    assert run.calls == [
        "join_and_delete",
        "sleep",
        "delete_batches",
        "sleep",
        "delete_batches",
        "publish_answer",
    ]
    assert run.ctx.ledger_checkpointed == ["join_and_delete", "publish_answer"]


def test_a_replay_after_the_attempt_closed_answers_from_the_ledger_without_deleting() -> None:
    """A crash after the attempt closed but before the workflow's result was stored: the replay's
    join finds the request's attempt closed and answers with its totals, deleting nothing — not
    even rows the record has gained since — and publishes the same answer again."""
    store = store_with(25)
    promises = Promises(store)
    run = promises.start(request(1))
    assert run.finish() == completed(1, [25, 3])
    store.add_record(RecordId("r"), 7)  # the record is back, with new rows, before the replay

    replayed = promises.replay(run)
    assert replayed.finish() == completed(1, [25, 3])
    assert replayed.calls == ONE_STEP
    assert store.count_rows(RecordId("r")) == 7, "the replay deleted none of the new rows"
    first, again = promises.answers()
    assert first == again, "the replay re-published the same answer (the documented publish window)"
    [attempt] = store.attempts(RecordId("r"))
    assert (attempt.state, attempt.totals) == ("done", AttemptTotals(25, 3))


def test_a_replay_after_the_attempt_failed_answers_with_the_same_failure() -> None:
    inner = store_with(50)
    promises = Promises(FailingOnCall(inner, 1, error=PERMANENT))
    run = promises.start(request(1))
    reason = run.finish()["failure"]
    assert reason.startswith("DeletionPlanInvalid: ")

    replayed = promises.replay(run)
    assert replayed.finish() == run.result
    assert replayed.calls == ["join_and_delete", "fail_attempt", "publish_answer"]
    assert inner.count_rows(RecordId("r")) == 50, "the replay ran no batch"
    [attempt] = inner.attempts(RecordId("r"))
    assert (attempt.state, attempt.reason) == ("failed", reason)


def test_request_headers_survive_the_stored_arguments_byte_for_byte() -> None:
    """Header values travel as text in the JSON-stored arguments; every byte value comes back,
    in the opener's answer and in a joiner's."""
    raw = bytes(range(256))
    promises = Promises(store_with(25))
    opener = promises.start(request(0, (("binary", raw),)), params=BATCH_PER_STEP)
    opener.until("join_and_delete")
    joiner = promises.start(request(1, (("binary", raw[::-1]),)))
    assert isinstance(joiner.stored[5][0][1], str), "stored as text"

    assert joiner.finish() == completed(1, [25, 3]), "the joiner joined the opener's attempt"

    assert [headers["binary"] for _, _, headers in promises.answers()] == [raw, raw[::-1]]
