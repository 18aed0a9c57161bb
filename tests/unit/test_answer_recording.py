"""The answer's coordinates are recorded after ONE publish: a database that cannot take the row
makes only the recording retry (briefly), never the publish. Driven by the recording durable
context of `test_workflow_steps`."""

from __future__ import annotations

import pytest

from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.domain import workflow
from record_deleter.domain.errors import RecordStoreUnavailable
from record_deleter.domain.evidence import Delivery
from record_deleter.domain.model import Answer, RecordId
from tests.unit.test_workflow_steps import COMPLETIONS, Promises, completed, request

pytestmark = pytest.mark.unit


class AnswersFailFirst(InMemoryRecordStore):
    """The in-memory store whose first `failures` `record_answer` calls raise `error`."""

    def __init__(self, failures: int, error: Exception) -> None:
        super().__init__()
        self.failures, self.error, self.tries = failures, error, 0

    def record_answer(self, answer: Answer, delivery: Delivery) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            raise self.error
        super().record_answer(answer, delivery)


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workflow, "ANSWER_RECORD_DELAYS", (0.0, 0.0, 0.0))


def _answers(store: InMemoryRecordStore) -> list[tuple[str, int, int, str]]:
    history = store.history(RecordId("r"))
    assert history is not None
    return [(x.topic, x.partition, x.offset, x.outcome) for a in history.attempts for x in a.answers]


def test_the_answer_is_recorded_where_the_broker_put_it() -> None:
    store = AnswersFailFirst(0, RecordStoreUnavailable("unused"))
    store.add_record(RecordId("r"), 5)
    promises = Promises(store)

    assert promises.start(request(3)).finish() == completed(1, [5, 1])

    [(partition, message)] = promises.broker.messages(COMPLETIONS)
    assert _answers(store) == [(COMPLETIONS, partition, message.offset, "deleted")]


def test_a_transient_store_error_retries_the_recording_until_it_lasts_and_publishes_once() -> None:
    """An outage longer than the listed delays (a database failing over) is waited out: the
    evidence gets its answer row, and the answer went out once."""
    failures = len(workflow.ANSWER_RECORD_DELAYS) * 3
    store = AnswersFailFirst(failures, RecordStoreUnavailable("database unavailable"))
    store.add_record(RecordId("r"), 5)
    promises = Promises(store)

    assert promises.start(request(3)).finish() == completed(1, [5, 1])

    assert len(promises.answers()) == 1, "the answer went out once"
    assert store.tries == failures + 1
    assert len(_answers(store)) == 1
    assert len(promises.events.named("store_error")) == failures, "the wait is visible"
    assert promises.events.named("answer_not_recorded") == []


def test_a_store_that_refuses_the_row_leaves_it_out_and_still_publishes_once() -> None:
    store = AnswersFailFirst(1_000, RuntimeError("a bug in the store"))
    store.add_record(RecordId("r"), 5)
    promises = Promises(store)

    assert promises.start(request(3)).finish() == completed(1, [5, 1]), "the step did not fail"

    assert len(promises.answers()) == 1, "no re-publish"
    assert _answers(store) == []
    [event] = promises.events.named("answer_not_recorded")
    assert event["attempt"] == 1
    assert store.tries == 1
