"""The runtime tells a duplicate delivery from a new workflow (the duplicates metric)."""

from __future__ import annotations

import pytest

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.domain.model import RecordId
from tests import builders

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def emit(self, event: str, **fields: object) -> None:
        self.events.append((event, fields))

    def duplicates(self) -> list[dict[str, object]]:
        return [f for e, f in self.events if e == "duplicate"]


def test_a_second_delivery_in_flight_and_one_after_completion_are_duplicates() -> None:
    broker = InMemoryBroker()
    broker.create_topic("done")
    broker.create_topic("failed")
    store = InMemoryRecordStore()
    for rid in ("a", "b"):
        store.add_record(RecordId(rid), 30)
    events = Recorder()
    runtime = builders.runtime(
        builders.resonate("local"), store, builders.publisher(broker, "done", "failed"), events=events
    )
    try:
        runtime.start(RecordId("a"), 1)
        runtime.start(RecordId("b"), 2)
        assert events.duplicates() == [], "new records are not duplicates"
        runtime.start(RecordId("a"), 3)  # delivered again, maybe still in flight
        runtime.wait(RecordId("a"), 10)
        runtime.wait(RecordId("b"), 10)
        runtime.start(RecordId("b"), 4)  # delivered again after completion
        assert events.duplicates() == [{"record_id": "a", "offset": 3}, {"record_id": "b", "offset": 4}]
        assert store.batches_done(RecordId("a")) == 1, "the duplicate attached to the one workflow"
    finally:
        runtime.stop()
