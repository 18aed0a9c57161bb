"""resonate-sdk makes a logger per workflow and step and never frees them; the runtime does."""

from __future__ import annotations

import logging

import pytest

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.domain.model import RecordId
from tests import builders
from tests.conftest import wait_for

pytestmark = pytest.mark.unit


def sdk_loggers(prefix: str) -> list[str]:
    return [name for name in list(logging.Logger.manager.loggerDict) if name.startswith(f"resonate:{prefix}")]


def test_finished_workflows_leave_no_loggers_behind() -> None:
    broker = InMemoryBroker()
    broker.create_topic("done")
    broker.create_topic("failed")
    store = InMemoryRecordStore()
    ids = [RecordId(f"lg:{i}") for i in range(40)]
    for rid in ids:
        store.add_record(rid, 25)
    runtime = builders.runtime(
        builders.resonate("local"),
        store,
        builders.publisher(broker, "done", "failed"),
        params=builders.workflow_params(
            batch_size=10, pause_seconds=0, step_seconds=0
        ),  # 3 delete steps each
    )
    try:
        for i, rid in enumerate(ids):
            runtime.start(rid, i)
        for rid in ids:
            runtime.wait(rid, 10)
        wait_for(lambda: runtime.in_flight() == 0, timeout=10, message="every workflow finished")
        assert sdk_loggers("lg:") == [], "loggers of finished workflows are still registered"
        # and the SDK still works for the next ones (it holds its own references)
        store.add_record(RecordId("lg:again"), 5)
        runtime.start(RecordId("lg:again"), 99)
        assert runtime.wait(RecordId("lg:again"), 10)["rows_deleted"] == 5
    finally:
        runtime.stop()
