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
from record_deleter.adapters.resonate_runtime import ResonateRuntime, StepRetry
from record_deleter.domain.errors import DeletionPlanInvalid, RecordStoreUnavailable
from record_deleter.domain.model import BatchResult, RecordId
from record_deleter.domain.workflow import DeletionAborted
from tests import builders
from tests.conftest import wait_for

pytestmark = [
    pytest.mark.unit,
    # resonate-sdk 0.6.7 encodes with jsonpickle, which warns on every call about a future default.
    pytest.mark.filterwarnings("ignore:keys will default to True:DeprecationWarning"),
]

COMPLETIONS = "records_that_were_deleted"
FAILURES = "record_deletions_failed"
WAIT = 30.0


class CountingStore:
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

    def delete_batch(self, record_id: RecordId, batch_size: int) -> BatchResult:
        with self._lock:
            self.calls[record_id.value] += 1
            call = self.calls[record_id.value]
        if self._fault is not None:
            self._fault(record_id, call)
        if self._delay is not None and (seconds := self._delay(record_id)) > 0:
            time.sleep(seconds)  # simulated deletion cost of this batch, not a wait for a condition
        return self.inner.delete_batch(record_id, batch_size)

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
    ) -> ResonateRuntime:
        runtime = builders.runtime(
            builders.resonate("local"),
            store or default_store,
            builders.publisher(broker, COMPLETIONS, FAILURES),
            params=builders.workflow_params(batch_size=batch_size, pause_seconds=pause),
            retry=retry or builders.step_retry(delay=0.01, max_delay=0.05),
        )
        runtimes.append(runtime)
        return runtime

    h = Harness(broker, rows, default_store, make_runtime)
    yield h
    for runtime in runtimes:
        runtime.stop()


def test_all_rows_are_deleted_across_batches_and_the_completion_is_published(harness: Harness) -> None:
    rid = RecordId("rec-1")
    harness.rows.add_record(rid, 95)
    runtime = harness.make_runtime(batch_size=10)

    runtime.start(rid, 7)
    result = runtime.wait(rid, WAIT)

    assert harness.rows.count_rows(rid) == 0
    assert harness.store.executions(rid) == 10
    assert result == {"status": "deleted", "record_id": "rec-1", "rows_deleted": 95, "batches": 10}
    [(value, headers, key)] = harness.completions()
    assert value == ["rec-1", 7]
    assert key == b"rec-1"
    assert headers == {"rows-deleted": b"95", "batches": b"10", "idempotency-key": b"rec-1"}
    assert harness.failures() == []
    assert runtime.status(rid).state == "resolved"


def test_a_transient_failure_retries_only_that_batch(harness: Harness) -> None:
    rid = RecordId("flaky")
    harness.rows.add_record(rid, 50)  # 5 batches of 10

    def third_call_fails_once(record_id: RecordId, call: int) -> None:
        if call == 3:
            raise RecordStoreUnavailable("database unavailable: connection reset")

    store = CountingStore(harness.rows, fault=third_call_fails_once)
    runtime = harness.make_runtime(batch_size=10, store=store)

    runtime.start(rid, 0)
    result = runtime.wait(rid, WAIT)

    assert store.executions(rid) == 5 + 1, "batches before the failure must not run again"
    assert harness.rows.count_rows(rid) == 0
    assert result["batches"] == 5
    assert result["rows_deleted"] == 50
    [(value, headers, _)] = harness.completions()
    assert value == ["flaky", 0]
    assert headers["batches"] == b"5"
    assert headers["rows-deleted"] == b"50"


@pytest.mark.parametrize("second_start", ["while-running", "after-completion"])
def test_the_same_record_started_twice_runs_one_workflow(harness: Harness, second_start: str) -> None:
    rid = RecordId("dup")
    harness.rows.add_record(rid, 40)  # 4 batches of 10
    store = CountingStore(harness.rows, delay=lambda _: 0.02)
    runtime = harness.make_runtime(batch_size=10, store=store)

    runtime.start(rid, 1)
    if second_start == "after-completion":
        runtime.wait(rid, WAIT)
    runtime.start(rid, 2)
    runtime.wait(rid, WAIT)

    assert store.executions(rid) == 4
    assert harness.rows.count_rows(rid) == 0
    completions = harness.completions()
    assert [value for value, _, _ in completions] == [["dup", 1]], "one completion, from the first delivery"


def test_a_big_record_does_not_hold_up_small_ones_behind_it(harness: Harness) -> None:
    big = RecordId("big")
    small = [RecordId(f"small-{i}") for i in range(20)]
    harness.rows.add_record(big, 400)  # 40 batches of 10, 50 ms each: about 2 s of work
    for rid in small:
        harness.rows.add_record(rid, 5)
    store = CountingStore(harness.rows, delay=lambda rid: 0.05 if rid == big else 0.0)
    runtime = harness.make_runtime(batch_size=10, store=store)

    runtime.start(big, 0)
    for offset, rid in enumerate(small, start=1):
        runtime.start(rid, offset)

    def completed_ids() -> list[str]:
        return [str(value[0]) for value, _, _ in harness.completions()]

    wait_for(
        lambda: {r.value for r in small} <= set(completed_ids()),
        timeout=WAIT,
        message="every small record completes",
    )
    assert big.value not in completed_ids(), "small records must complete before the big one"
    assert harness.rows.count_rows(big) > 0
    runtime.wait(big, WAIT)
    order = completed_ids()
    assert order[-1] == "big"
    assert len(order) == 21
    assert harness.rows.count_rows(big) == 0


def test_a_permanent_error_is_not_retried_and_is_published_as_a_failure(harness: Harness) -> None:
    rid = RecordId("bad-plan")
    harness.rows.add_record(rid, 30)

    def plan_is_invalid(record_id: RecordId, call: int) -> None:
        raise DeletionPlanInvalid("deletion plan names table 'nope', which does not exist")

    store = CountingStore(harness.rows, fault=plan_is_invalid)
    runtime = harness.make_runtime(
        batch_size=10, store=store, retry=builders.step_retry(max_attempts=5, delay=0.01)
    )

    runtime.start(rid, 3)
    with pytest.raises(DeletionAborted, match="DeletionPlanInvalid"):
        runtime.wait(rid, WAIT)

    assert store.executions(rid) == 1
    [failure] = harness.failures()
    assert failure["record_id"] == "bad-plan"
    assert failure["offset"] == 3
    assert "DeletionPlanInvalid" in str(failure["error"])
    assert "'nope'" in str(failure["error"])
    assert harness.completions() == []
    status = runtime.status(rid)
    assert status.state == "rejected"
    assert "DeletionPlanInvalid" in str(status.detail)
    assert harness.rows.count_rows(rid) == 30


def test_a_store_that_stays_down_is_retried_up_to_the_limit_then_fails(harness: Harness) -> None:
    rid = RecordId("down")
    harness.rows.add_record(rid, 30)

    def always_down(record_id: RecordId, call: int) -> None:
        raise RecordStoreUnavailable("database unavailable: connection refused")

    store = CountingStore(harness.rows, fault=always_down)
    runtime = harness.make_runtime(
        batch_size=10, store=store, retry=builders.step_retry(max_attempts=3, delay=0.01)
    )

    runtime.start(rid, 4)
    with pytest.raises(DeletionAborted, match="RecordStoreUnavailable"):
        runtime.wait(rid, WAIT)

    assert store.executions(rid) == 3
    [failure] = harness.failures()
    assert failure["record_id"] == "down"
    assert "RecordStoreUnavailable" in str(failure["error"])
    assert "connection refused" in str(failure["error"])
    status = runtime.status(rid)
    assert status.state == "rejected"
    assert "RecordStoreUnavailable" in str(status.detail)
    assert harness.completions() == []


def test_a_failure_after_some_batches_reports_what_was_deleted(harness: Harness) -> None:
    rid = RecordId("partial")
    harness.rows.add_record(rid, 50)

    def fails_from_third_call(record_id: RecordId, call: int) -> None:
        if call >= 3:
            raise DeletionPlanInvalid("column vanished")

    store = CountingStore(harness.rows, fault=fails_from_third_call)
    runtime = harness.make_runtime(batch_size=10, store=store)

    runtime.start(rid, 0)
    with pytest.raises(DeletionAborted):
        runtime.wait(rid, WAIT)

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
    runtime.start(rid, 0)
    result = runtime.wait(rid, WAIT)
    elapsed = time.monotonic() - started

    assert elapsed >= 2 * pause
    assert result["rows_deleted"] == 30
    assert result["batches"] == 3
    assert harness.store.executions(rid) == 3
    assert harness.rows.count_rows(rid) == 0
    [(value, _, _)] = harness.completions()
    assert value == ["paced", 0]


def test_status_of_a_record_never_started_is_unknown(harness: Harness) -> None:
    runtime = harness.make_runtime()
    assert runtime.status(RecordId("never")).state == "unknown"


def test_in_flight_counts_unfinished_workflows(harness: Harness) -> None:
    release = threading.Event()
    rid = RecordId("held")
    harness.rows.add_record(rid, 5)

    def hold(record_id: RecordId, call: int) -> None:
        release.wait(WAIT)

    runtime = harness.make_runtime(store=CountingStore(harness.rows, fault=hold))
    runtime.start(rid, 0)
    assert runtime.in_flight() == 1
    release.set()
    runtime.wait(rid, WAIT)
    wait_for(lambda: runtime.in_flight() == 0, timeout=WAIT, message="in_flight drops to 0")


# --- stress: the ThreadSafeLocalStore fix -------------------------------------------------------

STRESS_WORKFLOWS = 1200


def test_many_workflows_started_at_once_all_complete(harness: Harness) -> None:
    """The stock SDK LocalStore races under this load and ends the process with os._exit."""
    ids = [RecordId(f"s-{i}") for i in range(STRESS_WORKFLOWS)]
    for rid in ids:
        harness.rows.add_record(rid, 3)
    runtime = harness.make_runtime(batch_size=10)

    for offset, rid in enumerate(ids):
        runtime.start(rid, offset)
    for rid in ids:
        runtime.wait(rid, 60)

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
    from record_deleter.domain.model import RecordId
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
    for offset, rid in enumerate(ids):
        runtime.start(rid, offset)
    for rid in ids:
        runtime.wait(rid, 60)
    done = len(broker.messages("done"))
    runtime.stop()
    if done != n:
        print(f"only {done} of {n} completions", file=sys.stderr)
        sys.exit(3)
    """
)


def test_the_stress_run_never_crashes_the_process() -> None:
    """An SDK thread crash is os._exit(1): only a separate process can observe it as an exit code."""
    for run in range(3):
        proc = subprocess.run(
            [sys.executable, "-c", _STRESS_SCRIPT, str(STRESS_WORKFLOWS)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"run {run + 1} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
