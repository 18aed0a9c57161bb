"""The deletion workflow through the real Resonate SDK (local mode) over in-memory adapters.

Each test counts how often the batch step actually executed, because "completed steps are not
re-run" and "only the failing step retries" are claims about executions, not about results.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.adapters.observability import PrometheusEvents
from record_deleter.adapters.resonate_runtime import ResonateRuntime, StepRetry
from record_deleter.domain.errors import DeletionPlanInvalid, RecordStoreUnavailable
from record_deleter.domain.events import Events
from record_deleter.domain.model import AttemptTotals, BatchResult, InboundMessage, RecordId, RequestRef
from record_deleter.domain.ports import RecordStore
from tests import builders
from tests.conftest import wait_for

pytestmark = [
    pytest.mark.unit,
    # resonate-sdk 0.6.7 encodes with jsonpickle, which warns on every call about a future default.
    pytest.mark.filterwarnings("ignore:keys will default to True:DeprecationWarning"),
]

REQUESTS = "records_to_be_deleted"
COMPLETIONS = "records_that_were_deleted"
FAILURES = "record_deletions_failed"
WAIT = 30.0


def message(
    record_id: str, offset: int, *, partition: int = 0, headers: tuple[tuple[str, bytes], ...] = ()
) -> InboundMessage:
    """A request message as the broker delivers it (its timestamp fixed by its offset)."""
    value = json.dumps(record_id).encode()
    return InboundMessage(REQUESTS, partition, offset, value, record_id.encode(), headers, 1_000 + offset)


class CountingStore(RecordStore):
    """Wraps a record store: counts `delete_batch` executions per record and can inject faults."""

    def __init__(
        self,
        inner: InMemoryRecordStore,
        fault: Callable[[RecordId, int], None] | None = None,
        delay: Callable[[RecordId], float] | None = None,
    ) -> None:
        self.inner = inner
        self._fault = fault
        self._delay = delay
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def delete_batch(self, record_id: RecordId, batch_size: int, attempt: int) -> BatchResult:
        with self._lock:
            self.calls[record_id.value] += 1
            call = self.calls[record_id.value]
        if self._fault is not None:
            self._fault(record_id, call)
        if self._delay is not None and (seconds := self._delay(record_id)) > 0:
            time.sleep(seconds)  # simulated deletion cost of this batch, not a wait for a condition
        return self.inner.delete_batch(record_id, batch_size, attempt)

    def join_attempt(self, record_id: RecordId, request: RequestRef, request_key: str) -> int:
        return self.inner.join_attempt(record_id, request, request_key)

    def fail_attempt(self, record_id: RecordId, attempt: int, reason: str) -> AttemptTotals:
        return self.inner.fail_attempt(record_id, attempt, reason)

    def executions(self, record_id: RecordId) -> int:
        with self._lock:
            return self.calls[record_id.value]


@dataclass
class Harness:
    broker: InMemoryBroker
    rows: InMemoryRecordStore
    store: CountingStore
    make_runtime: Callable[..., ResonateRuntime]

    def completions(self) -> list[tuple[list[object], dict[str, bytes], bytes | None]]:
        return [
            (json.loads(m.value or b"null"), dict(m.headers), m.key)
            for _, m in self.broker.messages(COMPLETIONS)
        ]

    def failures(self) -> list[dict[str, object]]:
        return [json.loads(m.value or b"null") for _, m in self.broker.messages(FAILURES)]


@pytest.fixture
def harness() -> Iterator[Harness]:
    broker = InMemoryBroker()
    broker.create_topic(COMPLETIONS)
    broker.create_topic(FAILURES)
    rows = InMemoryRecordStore()
    default_store = CountingStore(rows)
    runtimes: list[ResonateRuntime] = []

    def make_runtime(
        *,
        batch_size: int = 10,
        pause: float = 0.0,
        retry: StepRetry | None = None,
        store: CountingStore | None = None,
        events: Events | None = None,
    ) -> ResonateRuntime:
        runtime = builders.runtime(
            builders.resonate("local"),
            store or default_store,
            builders.publisher(broker, COMPLETIONS, FAILURES),
            params=builders.workflow_params(batch_size=batch_size, pause_seconds=pause),
            retry=retry or builders.step_retry(delay=0.01, max_delay=0.05),
            events=events,
        )
        runtimes.append(runtime)
        return runtime

    h = Harness(broker, rows, default_store, make_runtime)
    yield h
    for runtime in runtimes:
        runtime.stop()


def run(runtime: ResonateRuntime, *messages: InboundMessage) -> list[dict[str, object]]:
    """Start the request workflow of each message (as the hand-off does), then wait for them all."""
    for m in messages:
        runtime.start(RecordId(json.loads(m.value or b"null")), m)
    return [runtime.wait(runtime.request_key(m), WAIT) for m in messages]


def test_all_rows_are_deleted_across_batches_and_the_answer_is_published(harness: Harness) -> None:
    rid = RecordId("rec-1")
    harness.rows.add_record(rid, 95)
    runtime = harness.make_runtime(batch_size=10)

    [result] = run(runtime, message("rec-1", 7, partition=2, headers=(("traceparent", b"00-abc-01"),)))

    assert harness.rows.count_rows(rid) == 0
    assert harness.store.executions(rid) == 10
    assert result == {
        "record_id": "rec-1",
        "attempt": 1,
        "deleted": True,
        "totals": [95, 10],
        "failure": None,
    }
    [(value, headers, key)] = harness.completions()
    assert value == ["rec-1", 7]
    assert key == b"rec-1"
    assert headers["rows-deleted"] == b"95"
    assert headers["batches"] == b"10"
    assert headers["attempt"] == b"1"
    assert (headers["request-topic"], headers["request-partition"], headers["request-offset"]) == (
        REQUESTS.encode(),
        b"2",
        b"7",
    )
    assert headers["traceparent"] == b"00-abc-01", "the request's own headers are carried over"
    assert headers["idempotency-key"].startswith(b"rd:req:")
    assert harness.failures() == []
    [attempt] = harness.rows.attempts(rid)
    assert (attempt.state, attempt.requests, attempt.totals.rows_deleted) == ("done", 1, 95)


def test_a_transient_failure_retries_only_that_batch(harness: Harness) -> None:
    rid = RecordId("flaky")
    harness.rows.add_record(rid, 50)  # 5 batches of 10

    def third_call_fails_once(record_id: RecordId, call: int) -> None:
        if call == 3:
            raise RecordStoreUnavailable("database unavailable: connection reset")

    store = CountingStore(harness.rows, fault=third_call_fails_once)
    runtime = harness.make_runtime(batch_size=10, store=store)

    [result] = run(runtime, message("flaky", 0))

    assert store.executions(rid) == 5 + 1, "batches before the failure must not run again"
    assert harness.rows.count_rows(rid) == 0
    assert result["totals"] == [50, 5]
    [(value, headers, _)] = harness.completions()
    assert value == ["flaky", 0]
    assert (headers["rows-deleted"], headers["batches"]) == (b"50", b"5")


def test_a_redelivered_message_makes_no_second_workflow_and_no_second_answer(harness: Harness) -> None:
    rid = RecordId("redelivered")
    harness.rows.add_record(rid, 40)
    runtime = harness.make_runtime(batch_size=10)

    run(runtime, message("redelivered", 5))
    run(runtime, message("redelivered", 5))  # the same message again (a rebalance, a restart)

    assert harness.store.executions(rid) == 4
    assert [value for value, _, _ in harness.completions()] == [["redelivered", 5]]
    assert len(harness.rows.attempts(rid)) == 1


def test_two_requests_while_one_deletion_runs_share_it_and_each_gets_an_answer(harness: Harness) -> None:
    rid = RecordId("joined")
    harness.rows.add_record(rid, 40)  # 4 batches of 10, 50 ms each
    release = threading.Event()

    def first_batch_waits(record_id: RecordId, call: int) -> None:
        if call == 1:
            release.wait(WAIT)

    store = CountingStore(harness.rows, fault=first_batch_waits)
    runtime = harness.make_runtime(batch_size=10, store=store)
    first, second = message("joined", 1), message("joined", 2)
    runtime.start(rid, first)
    wait_for(lambda: store.executions(rid) == 1, timeout=WAIT, message="the deletion is under way")
    runtime.start(rid, second)
    wait_for(
        lambda: len(harness.rows.attempts(rid)) == 1 and harness.rows.attempts(rid)[0].requests == 2,
        timeout=WAIT,
        message="the second request joined the running attempt",
    )
    release.set()
    runtime.wait(runtime.request_key(first), WAIT)
    runtime.wait(runtime.request_key(second), WAIT)

    assert store.executions(rid) == 4, "one deletion, not two"
    answers = sorted(
        (value[1], headers["attempt"], headers["rows-deleted"]) for value, headers, _ in harness.completions()
    )
    assert answers == [(1, b"1", b"40"), (2, b"1", b"40")]


def test_a_request_after_the_deletion_finished_starts_a_new_attempt(harness: Harness) -> None:
    rid = RecordId("again@example.com")
    harness.rows.add_record(rid, 30)
    runtime = harness.make_runtime(batch_size=10)

    run(runtime, message(rid.value, 1))
    harness.rows.add_record(rid, 12)  # the application re-created rows under the same id
    [second] = run(runtime, message(rid.value, 9))

    assert harness.rows.count_rows(rid) == 0
    assert second["attempt"] == 2
    answers = [
        (value[1], headers["attempt"], headers["rows-deleted"]) for value, headers, _ in harness.completions()
    ]
    assert answers == [(1, b"1", b"30"), (9, b"2", b"12")]
    assert [a.state for a in harness.rows.attempts(rid)] == ["done", "done"]


def test_a_big_record_does_not_hold_up_small_ones_behind_it(harness: Harness) -> None:
    big = RecordId("big")
    small = [RecordId(f"small-{i}") for i in range(20)]
    harness.rows.add_record(big, 400)  # 40 batches of 10, 50 ms each: about 2 s of work
    for rid in small:
        harness.rows.add_record(rid, 5)
    store = CountingStore(harness.rows, delay=lambda rid: 0.05 if rid == big else 0.0)
    runtime = harness.make_runtime(batch_size=10, store=store)

    runtime.start(big, message("big", 0))
    for offset, rid in enumerate(small, start=1):
        runtime.start(rid, message(rid.value, offset))

    def completed_ids() -> list[str]:
        return [str(value[0]) for value, _, _ in harness.completions()]

    wait_for(
        lambda: {r.value for r in small} <= set(completed_ids()),
        timeout=WAIT,
        message="every small record completes",
    )
    assert big.value not in completed_ids(), "small records must complete before the big one"
    assert harness.rows.count_rows(big) > 0
    runtime.wait(runtime.request_key(message("big", 0)), WAIT)
    order = completed_ids()
    assert order[-1] == "big"
    assert len(order) == 21
    assert harness.rows.count_rows(big) == 0


def test_a_permanent_error_fails_the_attempt_then_a_new_request_completes(harness: Harness) -> None:
    """No record id is burned: after the cause is fixed, the next request deletes and answers."""
    rid = RecordId("bad-plan")
    harness.rows.add_record(rid, 30)
    broken = threading.Event()
    broken.set()

    def plan_is_invalid(record_id: RecordId, call: int) -> None:
        if broken.is_set():
            raise DeletionPlanInvalid("deletion plan names table 'nope', which does not exist")

    store = CountingStore(harness.rows, fault=plan_is_invalid)
    runtime = harness.make_runtime(batch_size=10, store=store)

    [first] = run(runtime, message("bad-plan", 3))

    assert store.executions(rid) == 1, "a permanent error is not retried"
    assert first["deleted"] is False
    [failure] = harness.failures()
    assert (failure["record_id"], failure["offset"], failure["attempt"]) == ("bad-plan", 3, 1)
    assert "DeletionPlanInvalid" in str(failure["error"])
    assert "'nope'" in str(failure["error"])
    assert harness.completions() == []
    [attempt] = harness.rows.attempts(rid)
    assert attempt.state == "failed"
    assert "DeletionPlanInvalid" in str(attempt.reason)
    assert harness.rows.count_rows(rid) == 30

    broken.clear()  # the operator fixed the plan
    [second] = run(runtime, message("bad-plan", 4))

    assert second == {
        "record_id": "bad-plan",
        "attempt": 2,
        "deleted": True,
        "totals": [30, 3],
        "failure": None,
    }
    assert harness.rows.count_rows(rid) == 0
    assert [value for value, _, _ in harness.completions()] == [["bad-plan", 4]]


def test_a_store_that_stays_down_never_fails_the_record(harness: Harness) -> None:
    """Far longer than any bounded retry budget: the record waits, then completes."""
    rid = RecordId("down")
    harness.rows.add_record(rid, 30)
    down = threading.Event()
    down.set()

    def unreachable(record_id: RecordId, call: int) -> None:
        if down.is_set():
            raise RecordStoreUnavailable("database unavailable: connection refused")

    store = CountingStore(harness.rows, fault=unreachable)
    metrics = PrometheusEvents()
    runtime = harness.make_runtime(
        batch_size=10, store=store, retry=builders.step_retry(delay=0.01, max_delay=0.02), events=metrics
    )
    m = message("down", 4)
    runtime.start(rid, m)

    wait_for(
        lambda: store.executions(rid) >= 50,
        timeout=WAIT,
        message="50 attempts against a database that is down",
    )
    assert harness.failures() == []
    assert metrics.store_errors._value.get() >= 50, "the waiting is visible in the metrics"
    down.clear()
    result = runtime.wait(runtime.request_key(m), WAIT)

    assert result["deleted"] is True
    assert harness.failures() == []
    assert [value for value, _, _ in harness.completions()] == [["down", 4]]
    assert harness.rows.count_rows(rid) == 0


def test_a_failure_after_some_batches_reports_exactly_what_was_deleted(harness: Harness) -> None:
    rid = RecordId("partial")
    harness.rows.add_record(rid, 50)

    def fails_from_third_call(record_id: RecordId, call: int) -> None:
        if call >= 3:
            raise DeletionPlanInvalid("column vanished")

    store = CountingStore(harness.rows, fault=fails_from_third_call)
    runtime = harness.make_runtime(batch_size=10, store=store)

    run(runtime, message("partial", 0))

    [failure] = harness.failures()
    assert failure["rows_deleted"] == 20
    assert failure["batches"] == 2
    assert harness.rows.count_rows(rid) == 30


def test_the_workflow_pauses_durably_between_batches(harness: Harness) -> None:
    rid = RecordId("paced")
    harness.rows.add_record(rid, 30)  # 3 batches, so 2 pauses
    pause = 0.25
    runtime = harness.make_runtime(batch_size=10, pause=pause)

    started = time.monotonic()
    [result] = run(runtime, message("paced", 0))
    elapsed = time.monotonic() - started

    assert elapsed >= 2 * pause
    assert result["totals"] == [30, 3]
    assert harness.store.executions(rid) == 3
    assert harness.rows.count_rows(rid) == 0
    [(value, _, _)] = harness.completions()
    assert value == ["paced", 0]


def test_a_record_never_requested_has_no_attempts(harness: Harness) -> None:
    assert harness.rows.attempts(RecordId("never")) == []


def test_in_flight_counts_unfinished_workflows(harness: Harness) -> None:
    release = threading.Event()
    rid = RecordId("held")
    harness.rows.add_record(rid, 5)

    def hold(record_id: RecordId, call: int) -> None:
        release.wait(WAIT)

    runtime = harness.make_runtime(store=CountingStore(harness.rows, fault=hold))
    m = message("held", 0)
    runtime.start(rid, m)
    assert runtime.in_flight() == 1
    release.set()
    runtime.wait(runtime.request_key(m), WAIT)
    wait_for(lambda: runtime.in_flight() == 0, timeout=WAIT, message="in_flight drops to 0")


# --- stress: the ThreadSafeLocalStore fix -------------------------------------------------------

STRESS_WORKFLOWS = 1200


def test_many_workflows_started_at_once_all_complete(harness: Harness) -> None:
    """The stock SDK LocalStore races under this load and ends the process with os._exit."""
    ids = [RecordId(f"s-{i}") for i in range(STRESS_WORKFLOWS)]
    for rid in ids:
        harness.rows.add_record(rid, 3)
    runtime = harness.make_runtime(batch_size=10)

    run(runtime, *(message(rid.value, offset) for offset, rid in enumerate(ids)))

    completions = harness.completions()
    assert len(completions) == STRESS_WORKFLOWS
    assert {(value[0], value[1]) for value, _, _ in completions} == {
        (rid.value, offset) for offset, rid in enumerate(ids)
    }
    assert all(harness.rows.count_rows(rid) == 0 for rid in ids)


_STRESS_SCRIPT = textwrap.dedent(
    """
    import sys
    from record_deleter.adapters.memory_broker import InMemoryBroker
    from record_deleter.adapters.memory_store import InMemoryRecordStore
    from record_deleter.domain.model import InboundMessage, RecordId
    from tests import builders

    n = int(sys.argv[1])
    broker = InMemoryBroker()
    broker.create_topic("done")
    broker.create_topic("failed")
    store = InMemoryRecordStore()
    ids = [RecordId(f"s-{i}") for i in range(n)]
    for rid in ids:
        store.add_record(rid, 3)
    runtime = builders.runtime(
        builders.resonate("local"),
        store,
        builders.publisher(broker, "done", "failed"),
        params=builders.workflow_params(batch_size=10),
        retry=builders.step_retry(delay=0.01),
    )
    messages = [InboundMessage("requests", 0, offset, b"", None, (), offset) for offset in range(n)]
    for rid, m in zip(ids, messages):
        runtime.start(rid, m)
    for m in messages:
        runtime.wait(runtime.request_key(m), 60)
    done = len(broker.messages("done"))
    runtime.stop()
    if done != n:
        print(f"only {done} of {n} completions", file=sys.stderr)
        sys.exit(3)
    """
)


def test_the_stress_run_never_crashes_the_process() -> None:
    """An SDK thread crash is os._exit(1): only a separate process can observe it as an exit code."""
    for attempt in range(3):
        proc = subprocess.run(
            [sys.executable, "-c", _STRESS_SCRIPT, str(STRESS_WORKFLOWS)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"run {attempt + 1} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
