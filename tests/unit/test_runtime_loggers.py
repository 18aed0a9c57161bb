"""resonate-sdk makes a logger per workflow and step and never frees them; the runtime does."""

from __future__ import annotations

import logging
import time

import pytest

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.domain.model import InboundMessage, RecordId
from tests import builders
from tests.conftest import wait_for

pytestmark = pytest.mark.unit

NAMESPACE = "loggers"  # this test's durable ids, apart from every other test's in the process


def sdk_loggers() -> list[str]:
    """Loggers the SDK made for this test's request workflows, attempt workflows and their steps."""
    mine = (f"resonate:rd:req:{NAMESPACE}:", f"resonate:rd:del:{NAMESPACE}:")
    return [name for name in list(logging.Logger.manager.loggerDict) if name.startswith(mine)]


def loggers_left(timeout: float) -> list[str]:
    """The SDK loggers still registered once they are all gone, or at the deadline (the runtime
    forgets them in the callback that runs as each workflow finishes)."""
    deadline = time.monotonic() + timeout
    while (left := sdk_loggers()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def message(offset: int) -> InboundMessage:
    return InboundMessage("requests", 0, offset, b"", None, (), 1_000 + offset)


def test_finished_workflows_leave_no_loggers_behind() -> None:
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
        for rid, m in zip(ids, messages, strict=True):
            runtime.start(rid, m)
        for m in messages:
            assert runtime.wait(runtime.request_key(m), 10)["deleted"] is True
        wait_for(lambda: runtime.in_flight() == 0, timeout=10, message="every workflow finished")
        assert len(broker.messages("done")) == len(ids)
        assert loggers_left(timeout=5) == [], "loggers of finished workflows are still registered"

        # and the SDK still works for the next ones (it holds its own references)
        again = RecordId("tenant/again@lg.example")
        store.add_record(again, 5)
        runtime.start(again, message(99))
        assert runtime.wait(runtime.request_key(message(99)), 10)["totals"] == [5, 1]
    finally:
        runtime.stop()
