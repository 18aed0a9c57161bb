"""resonate-sdk makes a logger per workflow and step and never frees them; the runtime has it log
through one shared logger instead (Workaround 4), with the same lines."""

from __future__ import annotations

import logging

import pytest

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.domain.errors import RecordStoreUnavailable
from record_deleter.domain.model import BatchResult, InboundMessage, JoinedAttempt, RecordId, RequestRef
from tests import builders
from tests.conftest import wait_for

pytestmark = pytest.mark.unit

NAMESPACE = "loggers"  # this test's durable ids, apart from every other test's in the process


def sdk_loggers() -> list[str]:
    """Loggers the SDK made for this test's request workflows, attempt workflows and their steps."""
    mine = (f"resonate:rd:req:{NAMESPACE}:", f"resonate:rd:del:{NAMESPACE}:")
    return [name for name in list(logging.Logger.manager.loggerDict) if name.startswith(mine)]


def registered() -> int:
    return len(logging.Logger.manager.loggerDict)


def message(offset: int) -> InboundMessage:
    return InboundMessage("requests", 0, offset, b"", None, (), 1_000 + offset)


def test_workflows_and_steps_make_no_logger_of_their_own() -> None:
    broker = InMemoryBroker()
    broker.create_topic("done")
    broker.create_topic("failed")
    store = InMemoryRecordStore()
    ids = [RecordId(f"tenant/{i}@lg.example") for i in range(40)]
    for rid in ids:
        store.add_record(rid, 25)
    runtime = builders.runtime(
        builders.resonate("local"),
        store,
        builders.publisher(broker, "done", "failed"),
        params=builders.workflow_params(batch_size=10, pause_seconds=0, step_seconds=0),  # 3 delete steps
        namespace=NAMESPACE,
    )
    try:
        messages = [message(i) for i in range(len(ids))]
        before = registered()
        for rid, m in zip(ids, messages, strict=True):
            runtime.start(rid, m)
        for m in messages:
            assert runtime.wait(runtime.request_key(m), 10)["deleted"] is True
        wait_for(lambda: runtime.in_flight() == 0, timeout=10, message="every workflow finished")
        assert len(broker.messages("done")) == len(ids)
        assert sdk_loggers() == [], "the SDK registered loggers of its workflows or steps"
        assert registered() == before, "160 workflow and step contexts added loggers to the process"
    finally:
        runtime.stop()


@pytest.mark.parametrize("hashed", [False, True], ids=["clear", "hashed"])
def test_the_sdks_step_warnings_still_reach_stderr_in_its_format(
    capfd: pytest.CaptureFixture[str], hashed: bool
) -> None:
    """A step retried after a transient error: the SDK's warning line, with the workflow and
    step ids, as the SDK's own per-context loggers wrote it. With record ids hashed in logs
    (WORKER_LOG_RECORD_IDS=hashed) the line has no arguments: no record id in clear."""
    broker = InMemoryBroker()
    broker.create_topic("done")
    broker.create_topic("failed")
    store = InMemoryRecordStore()
    rid = RecordId(f"flaky-{hashed}@lg.example")
    store.add_record(rid, 5)
    failures = iter([RecordStoreUnavailable("database unavailable: connection reset")])

    class Flaky(InMemoryRecordStore):
        def delete_batch(self, record_id: RecordId, batch_size: int, attempt: int) -> BatchResult:
            if (error := next(failures, None)) is not None:
                raise error
            return store.delete_batch(record_id, batch_size, attempt)

        def join_attempt(self, record_id: RecordId, request: RequestRef, request_key: str) -> JoinedAttempt:
            return store.join_attempt(record_id, request, request_key)

    runtime = builders.runtime(
        builders.resonate("local", redact_log_args=hashed),
        Flaky(),
        builders.publisher(broker, "done", "failed"),
        params=builders.workflow_params(batch_size=10),
        retry=builders.step_retry(delay=0.05),
        namespace=NAMESPACE,
    )
    try:
        m = message(500 + hashed)
        runtime.start(rid, m)
        assert runtime.wait(runtime.request_key(m), 10)["deleted"] is True
    finally:
        runtime.stop()
    key = runtime.request_key(m)
    err = capfd.readouterr().err
    warnings = [line for line in err.splitlines() if "[WARNING]" in line and key in line]
    assert warnings, "the SDK's retry warning was not written"
    assert f"[{key}] [{key}.1]" in warnings[0]
    assert "join_and_delete" in warnings[0]
    assert "retrying" in warnings[0]
    assert "RecordStoreUnavailable" in warnings[0]
    if hashed:
        assert rid.value not in err
        assert "connection reset" not in warnings[0]
    else:
        assert rid.value in warnings[0]


def test_finished_workflows_leave_no_computation() -> None:
    """Workaround 8: the SDK's scheduler keeps every workflow's computation; the runtime drops
    those of the workflows it started once they finish, and the SDK goes on working."""
    broker = InMemoryBroker()
    broker.create_topic("done")
    broker.create_topic("failed")
    store = InMemoryRecordStore()
    ids = [RecordId(f"computation-{i}") for i in range(40)]
    for rid in ids:
        store.add_record(rid, 25)
    resonate = builders.resonate("local")
    runtime = builders.runtime(
        resonate,
        store,
        builders.publisher(broker, "done", "failed"),
        params=builders.workflow_params(batch_size=10, pause_seconds=0, step_seconds=0),
        namespace=NAMESPACE,
    )
    computations = resonate._bridge._scheduler.computations  # the SDK's, read to check it
    try:
        messages = [message(200 + i) for i in range(len(ids))]
        for rid, m in zip(ids, messages, strict=True):
            runtime.start(rid, m)
        for m in messages:
            assert runtime.wait(runtime.request_key(m), 10)["deleted"] is True
        wait_for(lambda: runtime.in_flight() == 0, timeout=10, message="every workflow finished")
        kept = [key for key in computations if key.startswith(f"rd:req:{NAMESPACE}:")]
        assert kept == [], f"{len(kept)} finished workflows' computations are still held"

        again = RecordId("computation-again")
        store.add_record(again, 5)
        runtime.start(again, message(299))
        assert runtime.wait(runtime.request_key(message(299)), 10)["totals"] == [5, 1]
    finally:
        runtime.stop()
