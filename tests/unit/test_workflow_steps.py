"""How the workflow spends its checkpoints: a delete step per batch, or batches per step within a budget.

Driven by a recording durable context (no runtime): what matters here is which durable calls the
workflow makes, since each costs server round trips."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.domain.errors import RecordStoreUnavailable
from record_deleter.domain.events import NoEvents
from record_deleter.domain.model import BatchResult, RecordId
from record_deleter.domain.workflow import (
    PORTS,
    DeletionAborted,
    WorkflowPorts,
    delete_batches,
    delete_record,
)
from tests import builders

pytestmark = pytest.mark.unit


class Call:
    def __init__(self, func: Any, args: tuple[Any, ...]) -> None:
        self.func, self.args = func, args

    def options(self, **_: Any) -> Call:
        return self


class RecordingContext:
    """Runs each step at once (no retries) and records the durable calls made."""

    def __init__(self, store: Any) -> None:
        broker = InMemoryBroker()
        broker.create_topic("done")
        broker.create_topic("failed")
        self.deps = {
            PORTS: WorkflowPorts(store, builders.publisher(broker, "done", "failed"), NoEvents(), {}),
        }
        self.calls: list[str] = []

    def run(self, func: Any, *args: Any) -> Call:
        return Call(func, args)

    def sleep(self, secs: float) -> str:
        return "sleep"

    def get_dependency(self, key: str, default: Any = None) -> Any:
        return self.deps.get(key, default)

    def drive(self, workflow: Generator[Any, Any, Any]) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                call = workflow.throw(error) if error is not None else workflow.send(value)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            if call == "sleep":
                self.calls.append("sleep")
                continue
            self.calls.append(call.func.__name__)
            try:
                value = call.func(self, *call.args)
            except Exception as exc:  # the step failed beyond its (absent) retries
                error = exc


def store_with(rows: int) -> InMemoryRecordStore:
    store = InMemoryRecordStore()
    store.add_record(RecordId("r"), rows)
    return store


def test_without_a_pause_one_step_deletes_every_batch_within_its_budget() -> None:
    ctx = RecordingContext(store_with(95))
    result = ctx.drive(delete_record(ctx, "r", 3, batch_size=10, pause_seconds=0, step_seconds=60))
    assert ctx.calls == ["delete_batches", "publish_completion"]
    assert result["batches"] == 10
    assert result["rows_deleted"] == 95


def test_a_zero_budget_checkpoints_every_batch() -> None:
    ctx = RecordingContext(store_with(95))
    result = ctx.drive(delete_record(ctx, "r", 3, batch_size=10, pause_seconds=0, step_seconds=0))
    assert ctx.calls == ["delete_batches"] * 10 + ["publish_completion"]
    assert result["batches"] == 10


def test_with_a_pause_every_batch_is_its_own_step_followed_by_a_durable_sleep() -> None:
    ctx = RecordingContext(store_with(25))
    result = ctx.drive(delete_record(ctx, "r", 3, batch_size=10, pause_seconds=1, step_seconds=60))
    assert ctx.calls == [
        "delete_batches",
        "sleep",
        "delete_batches",
        "sleep",
        "delete_batches",
        "publish_completion",
    ]
    assert result["rows_deleted"] == 25


class FailingOnCall:
    def __init__(self, inner: InMemoryRecordStore, *failing_calls: int) -> None:
        self.inner, self.failing_calls, self.calls = inner, failing_calls, 0

    def delete_batch(self, record_id: RecordId, batch_size: int) -> BatchResult:
        self.calls += 1
        if self.calls in self.failing_calls:
            raise RecordStoreUnavailable("database unavailable: connection reset")
        return self.inner.delete_batch(record_id, batch_size)


def test_a_failure_after_some_batches_checkpoints_them_before_the_error_surfaces() -> None:
    store = FailingOnCall(store_with(50), 3)
    ctx = RecordingContext(store)
    assert delete_batches(ctx, "r", 10, 60) == {"deleted": 20, "batches": 2, "more": True}
    assert delete_batches(ctx, "r", 10, 60) == {"deleted": 30, "batches": 3, "more": False}


def test_a_failure_on_a_steps_first_batch_is_raised_for_the_retry_policy() -> None:
    store = FailingOnCall(store_with(50), 1)
    ctx = RecordingContext(store)
    with pytest.raises(RecordStoreUnavailable):
        delete_batches(ctx, "r", 10, 60)


def test_counts_survive_a_step_cut_short_and_a_permanent_failure_is_published() -> None:
    store = FailingOnCall(store_with(50), 3, 4)
    ctx = RecordingContext(store)
    with pytest.raises(DeletionAborted, match="connection reset"):
        ctx.drive(delete_record(ctx, "r", 3, batch_size=10, pause_seconds=0, step_seconds=60))
    # step 1 kept its 2 batches; step 2 failed on its first batch (no retries here): failure published
    assert ctx.calls == ["delete_batches", "delete_batches", "publish_failure"]
