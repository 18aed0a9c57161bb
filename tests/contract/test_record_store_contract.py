"""One contract for every RecordStore (+ RecordInventory): in-memory, SQLite and PostgreSQL.

The in-memory store stands in for the SQL stores in unit tests and the demo; this suite is what
entitles it to. Record ids are unique per test so the PostgreSQL database can be shared.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from record_deleter.adapters.evidence_chain import AuditIdentity
from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.adapters.sql_migrations import prepare_demo_database
from record_deleter.adapters.sql_store import DeletionPlan, PlanStep, SqlRecordStore
from record_deleter.domain.errors import DeletionPlanInvalid
from record_deleter.domain.evidence import Delivery, RecordHistory
from record_deleter.domain.model import Answer, AttemptTotals, BatchResult, RecordId, RequestRef
from tests import builders
from tests.conftest import service_endpoint

IDENTITY = AuditIdentity(worker="contract-worker")


@dataclass
class Subject:
    store: InMemoryRecordStore | SqlRecordStore
    engine: Engine | None = None


def _sqlite_engine(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path / 'contract.db'}"
    prepare_demo_database(url)
    return builders.engine(url)


_postgres_lock = threading.Lock()
_postgres_engine: dict[str, Engine] = {}


def _postgres_engine_once() -> Engine:
    """Migrate the shared database once per session and reuse one engine (a pool)."""
    url = service_endpoint("DATABASE_URL", "PostgreSQL")
    with _postgres_lock:
        if url not in _postgres_engine:
            prepare_demo_database(url)
            _postgres_engine[url] = builders.engine(url)
        return _postgres_engine[url]


@pytest.fixture(scope="session", autouse=True)
def _dispose_postgres_engines() -> Iterator[None]:
    yield
    for engine in _postgres_engine.values():
        engine.dispose()


def _engine_for(kind: str, tmp_path: Path) -> Iterator[Engine]:
    if kind == "sqlite":
        engine = _sqlite_engine(tmp_path)
        yield engine
        engine.dispose()
    else:
        yield _postgres_engine_once()


MEMORY = pytest.param("memory", marks=pytest.mark.unit)
SQLITE = pytest.param("sqlite", marks=pytest.mark.unit)
POSTGRES = pytest.param("postgres", marks=pytest.mark.integration)


@pytest.fixture(params=[MEMORY, SQLITE, POSTGRES])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    if request.param == "memory":
        yield Subject(InMemoryRecordStore(identity=IDENTITY))
        return
    for engine in _engine_for(request.param, tmp_path):
        yield Subject(builders.sql_store(engine, identity=IDENTITY), engine)


@pytest.fixture(params=[SQLITE, POSTGRES])
def sql_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from _engine_for(request.param, tmp_path)


def new_id(prefix: str = "rec") -> RecordId:
    return RecordId(f"{prefix}-{uuid.uuid4().hex}")


def drain(delete: Callable[[], BatchResult], limit: int = 10_000) -> list[BatchResult]:
    results: list[BatchResult] = []
    for _ in range(limit):
        result = delete()
        results.append(result)
        if not result.more:
            return results
    pytest.fail(f"still reporting more rows after {limit} batches")


def assert_nothing_left(result: BatchResult) -> None:
    assert (result.deleted, result.more) == (0, False)


def request(offset: int, *, headers: tuple[tuple[str, bytes], ...] = ()) -> tuple[RequestRef, str]:
    ref = RequestRef("records_to_be_deleted", 0, offset, 1_700_000_000_000 + offset, headers)
    return ref, f"{ref.key('contract')}:{uuid.uuid4().hex}"


# --- the contract -------------------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "batch_size"), [(1, 1), (20, 7), (21, 7), (100, 10), (5, 1000)])
def test_batches_delete_everything_at_most_batch_size_at_a_time(
    subject: Subject, rows: int, batch_size: int
) -> None:
    store = subject.store
    rid = new_id()
    store.add_record(rid, rows)
    before = store.count_rows(rid)
    assert before > 0

    results = drain(lambda: store.delete_batch(rid, batch_size, 1))

    assert all(0 <= r.deleted <= batch_size for r in results)
    assert sum(r.deleted for r in results) == before
    assert [r.more for r in results] == [True] * (len(results) - 1) + [False]
    assert len(results) == math.ceil(before / batch_size)
    assert store.count_rows(rid) == 0
    assert store.batches_done(rid) == len(results)


def test_deleting_an_unknown_record_is_a_no_op(subject: Subject) -> None:
    rid = new_id("unknown")
    assert_nothing_left(subject.store.delete_batch(rid, 10, 1))
    assert subject.store.count_rows(rid) == 0


def test_deleting_an_already_deleted_record_is_a_no_op(subject: Subject) -> None:
    """A step replayed or retried after it committed must be harmless."""
    store = subject.store
    rid = new_id()
    store.add_record(rid, 3)
    drain(lambda: store.delete_batch(rid, 10, 1))
    calls = store.batches_done(rid)

    assert_nothing_left(store.delete_batch(rid, 10, 1))
    assert_nothing_left(store.delete_batch(rid, 10, 1))
    assert store.count_rows(rid) == 0
    assert store.batches_done(rid) == calls + 2, "every executed batch is counted, even a no-op"


def test_other_records_are_untouched(subject: Subject) -> None:
    store = subject.store
    target, neighbour = new_id("target"), new_id("neighbour")
    store.add_record(target, 25)
    store.add_record(neighbour, 25)
    neighbour_before = store.count_rows(neighbour)

    drain(lambda: store.delete_batch(target, 10, 1))

    assert store.count_rows(target) == 0
    assert store.count_rows(neighbour) == neighbour_before
    assert store.batches_done(neighbour) == 0


def test_concurrent_batches_never_delete_more_than_exists(subject: Subject) -> None:
    """Four workers racing on one record (e.g. a zombie and its replacement) delete each row once.

    And a worker told "no rows remain" is told the truth: a premature `more=False` would publish
    a completion while rows are still there.
    """
    store = subject.store
    rid = new_id("raced")
    store.add_record(rid, 300)
    before = store.count_rows(rid)
    store.join_attempt(rid, *request(1))
    results: list[BatchResult] = []
    left_when_done: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    go = threading.Barrier(4)

    def worker() -> None:
        try:
            go.wait(10)
            while True:
                result = store.delete_batch(rid, 7, 1)
                with lock:
                    results.append(result)
                if not result.more:
                    left_when_done.append(store.count_rows(rid))
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    assert not any(t.is_alive() for t in threads)
    assert all(0 <= r.deleted <= 7 for r in results)
    assert sum(r.deleted for r in results) == before
    assert store.count_rows(rid) == 0
    assert left_when_done == [0, 0, 0, 0], "more=False was reported while rows remained"
    assert store.batches_done(rid) == len(results)
    chain = history_of(store, rid).chain
    assert (chain.intact, chain.batches) == (True, len(results)), (
        "the racing batches took turns: one linear chain (the attempt's row lock on PostgreSQL)"
    )


# --- the ledger: one attempt at a time per record, one row per distinct request -------------------


def test_requests_join_the_running_attempt_and_a_later_one_opens_the_next(subject: Subject) -> None:
    store = subject.store
    rid = new_id("ledger")
    store.add_record(rid, 5)
    rows = store.count_rows(rid)  # the SQL stores count the parent row in `records` too
    (first, key1), (second, key2), (third, key3) = request(1), request(2), request(3)

    assert store.join_attempt(rid, first, key1).number == 1
    assert store.join_attempt(rid, first, key1).number == 1, "registering the same request again is a no-op"
    assert store.join_attempt(rid, second, key2).number == 1, "a request while attempt 1 runs joins it"
    results = drain(lambda: store.delete_batch(rid, 2, 1))
    assert results[-1].totals == AttemptTotals(rows, len(results))
    assert store.join_attempt(rid, third, key3).number == 2, (
        "after attempt 1 finished, a request opens attempt 2"
    )
    assert store.join_attempt(rid, second, key2).number == 1, "a replayed join keeps its attempt"

    attempts = store.attempts(rid)
    assert [(a.attempt, a.state, a.requests) for a in attempts] == [(1, "done", 2), (2, "running", 1)]
    assert attempts[0].totals == AttemptTotals(rows, len(results))
    assert attempts[0].finished_at is not None


def test_the_totals_count_every_batch_of_the_attempt_however_many_steps_ran_them(subject: Subject) -> None:
    """A crash between batches and the step's checkpoint re-runs the step: the audit still counts all."""
    store = subject.store
    rid = new_id("exact")
    store.add_record(rid, 24)
    rows = store.count_rows(rid)
    ref, key = request(1)
    attempt = store.join_attempt(rid, ref, key).number

    first_step = [store.delete_batch(rid, 5, attempt) for _ in range(3)]  # "crashed" before its checkpoint
    rest = drain(lambda: store.delete_batch(rid, 5, attempt))

    assert sum(r.deleted for r in first_step + rest) == rows
    assert rest[-1].totals == AttemptTotals(rows, len(first_step) + len(rest))
    assert store.count_rows(rid) == 0


def test_a_failed_attempt_keeps_its_reason_and_the_next_request_opens_a_new_one(subject: Subject) -> None:
    store = subject.store
    rid = new_id("failing")
    store.add_record(rid, 10)
    (first, key1), (second, key2) = request(1), request(2)
    attempt = store.join_attempt(rid, first, key1).number
    store.delete_batch(rid, 4, attempt)

    assert store.fail_attempt(rid, attempt, "DeletionPlanInvalid: no table x") == AttemptTotals(4, 1)
    assert store.fail_attempt(rid, attempt, "again") == AttemptTotals(4, 1), "closing twice changes nothing"
    [failed] = store.attempts(rid)
    assert (failed.state, failed.reason) == ("failed", "DeletionPlanInvalid: no table x")
    assert store.join_attempt(rid, second, key2).number == 2
    drain(lambda: store.delete_batch(rid, 4, 2))
    assert [a.state for a in store.attempts(rid)] == ["failed", "done"]
    assert [
        (a.record_id, a.state) for a in store.latest_attempts("done", 1000) if a.record_id == rid.value
    ] == [(rid.value, "done")]
    assert all(a.record_id != rid.value for a in store.latest_attempts("failed", 1000))


# --- the evidence: what each batch deleted where, by whom; final counts; answers ------------------


def history_of(store: InMemoryRecordStore | SqlRecordStore, rid: RecordId) -> RecordHistory:
    found = store.history(rid)
    assert found is not None, "the record was requested: the ledger has its history"
    return found


def test_every_batch_carries_its_tables_and_worker_and_the_closing_one_final_counts_of_0(
    subject: Subject,
) -> None:
    store = subject.store
    rid = new_id("evidence")
    store.add_record(rid, 9)
    rows = store.count_rows(rid)
    ref, key = request(1)
    attempt = store.join_attempt(rid, ref, key).number
    results = drain(lambda: store.delete_batch(rid, 4, attempt))

    [a] = history_of(store, rid).attempts
    assert [b.rows_deleted for b in a.batch_rows] == [r.deleted for r in results]
    assert all(b.tables and sum(b.tables.values()) == b.rows_deleted for b in a.batch_rows), (
        "each batch's table breakdown adds up to its rows"
    )
    assert {b.worker for b in a.batch_rows} == {"contract-worker"}
    assert sum(b.rows_deleted for b in a.batch_rows) == rows
    assert a.final_counts is not None
    assert set(a.final_counts) == set(a.batch_rows[0].tables or {}), "a count for every plan table"
    assert set(a.final_counts.values()) == {0}, "nothing of the record left when it closed"
    assert a.audit_head == a.batch_rows[-1].chain_hash
    assert [(r.topic, r.partition, r.offset) for r in a.requests] == [(ref.topic, ref.partition, ref.offset)]
    assert history_of(store, rid).chain.intact


def test_a_failed_attempt_records_what_was_left_and_its_last_batch(subject: Subject) -> None:
    store = subject.store
    rid = new_id("evidence-failed")
    store.add_record(rid, 9)
    ref, key = request(1)
    attempt = store.join_attempt(rid, ref, key).number
    store.delete_batch(rid, 4, attempt)
    store.fail_attempt(rid, attempt, "DeletionRejected: refused")

    [a] = history_of(store, rid).attempts
    assert a.final_counts is not None
    assert sum(a.final_counts.values()) == store.count_rows(rid) > 0
    assert a.audit_head == a.batch_rows[-1].chain_hash


def test_an_answers_coordinates_are_kept_per_answer(subject: Subject) -> None:
    store = subject.store
    rid = new_id("answered")
    store.add_record(rid, 2)
    ref, key = request(1)
    attempt = store.join_attempt(rid, ref, key).number
    totals = drain(lambda: store.delete_batch(rid, 10, attempt))[-1].totals or AttemptTotals(0, 0)
    answer = Answer(rid, ref, attempt, totals, key)

    store.record_answer(answer, Delivery("done-topic", 2, 41))
    store.record_answer(answer, Delivery("done-topic", 2, 42))  # re-published after a crash

    [a] = history_of(store, rid).attempts
    assert [(x.outcome, x.topic, x.partition, x.offset, x.worker, x.request_key) for x in a.answers] == [
        ("deleted", "done-topic", 2, 41, "contract-worker", key),
        ("deleted", "done-topic", 2, 42, "contract-worker", key),
    ]


def test_a_record_never_requested_has_no_history(subject: Subject) -> None:
    assert subject.store.history(new_id("never")) is None


def test_a_replayed_join_learns_how_its_attempt_closed(subject: Subject) -> None:
    """A request joined before (its workflow replaying after a crash) learns whether its attempt
    closed since: running, done with its totals, or failed with its reason."""
    store = subject.store
    done_id, failed_id = new_id("closed"), new_id("failed")
    store.add_record(done_id, 3)
    store.add_record(failed_id, 3)
    (done_ref, done_key), (failed_ref, failed_key) = request(1), request(2)

    running = store.join_attempt(done_id, done_ref, done_key)
    assert (running.state, running.totals, running.reason) == ("running", None, None)
    results = drain(lambda: store.delete_batch(done_id, 2, running.number))
    again = store.join_attempt(done_id, done_ref, done_key)
    assert (again.number, again.opened_by, again.state) == (1, done_key, "done")
    assert again.totals == results[-1].totals

    attempt = store.join_attempt(failed_id, failed_ref, failed_key).number
    store.delete_batch(failed_id, 1, attempt)
    store.fail_attempt(failed_id, attempt, "DeletionRejected: refused")
    closed = store.join_attempt(failed_id, failed_ref, failed_key)
    assert (closed.state, closed.totals, closed.reason) == (
        "failed",
        AttemptTotals(1, 1),
        "DeletionRejected: refused",
    )


def test_join_and_delete_runs_the_openers_first_batch_or_leaves_it_to_the_caller(subject: Subject) -> None:
    """The opener's first batch comes with its join (the SQL stores commit both at once) or is
    left to `delete_batch`; either way the ledger and the rows end up as with the two calls. A
    joiner's and a closed attempt's join run no batch."""
    store = subject.store
    rid = new_id("merged")
    store.add_record(rid, 5)
    rows = store.count_rows(rid)
    (opener, key1), (joiner, key2) = request(1), request(2)

    joined, first = store.join_and_delete(rid, opener, key1, 2)
    assert (joined.number, joined.opened_by) == (1, key1)
    results = [first] if first is not None else []
    assert store.join_and_delete(rid, joiner, key2, 2) == (store.join_attempt(rid, joiner, key2), None)
    results += drain(lambda: store.delete_batch(rid, 2, 1)) if not results or results[-1].more else []
    assert sum(r.deleted for r in results) == rows
    assert store.count_rows(rid) == 0
    done, nothing = store.join_and_delete(rid, opener, key1, 2)
    assert (done.state, done.totals, nothing) == ("done", AttemptTotals(rows, len(results)), None)
    [attempt] = store.attempts(rid)
    assert (attempt.state, attempt.requests, attempt.totals) == ("done", 2, AttemptTotals(rows, len(results)))


def test_the_sql_store_commits_the_openers_join_and_first_batch_together(sql_engine: Engine) -> None:
    store = builders.sql_store(sql_engine)
    rid = new_id("one-commit")
    store.add_record(rid, 2)
    ref, key = request(1)
    joined, first = store.join_and_delete(rid, ref, key, 100)
    assert first is not None, "the SQL store runs the opener's first batch with its join"
    assert (first.deleted, first.more, first.totals) == (3, False, AttemptTotals(3, 1))
    assert joined.number == 1
    assert store.count_rows(rid) == 0


def test_concurrent_first_requests_open_one_attempt(subject: Subject) -> None:
    """Eight requests for a new record at the same instant (eight partitions): one attempt."""
    store = subject.store
    rid = new_id("crowd")
    store.add_record(rid, 3)
    go = threading.Barrier(8)
    got: list[int] = []
    errors: list[BaseException] = []

    def join(offset: int) -> None:
        try:
            ref, key = request(offset)
            go.wait(10)
            got.append(store.join_attempt(rid, ref, key).number)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=join, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    assert got == [1] * 8
    [only] = store.attempts(rid)
    assert only.requests == 8


@pytest.mark.parametrize(
    "text", ["ada@example.com", "tenant/42", "v1.2.3", "Åsa Öberg", "a'; DROP TABLE records; --"]
)
def test_record_ids_as_real_systems_write_them(subject: Subject, text: str) -> None:
    store = subject.store
    rid = RecordId(f"{text}-{uuid.uuid4().hex[:8]}")
    store.add_record(rid, 3)
    rows = store.count_rows(rid)
    ref, key = request(1)
    attempt = store.join_attempt(rid, ref, key).number
    results = drain(lambda: store.delete_batch(rid, 2, attempt))
    assert results[-1].totals == AttemptTotals(rows, len(results))
    assert store.count_rows(rid) == 0
    assert [a.state for a in store.attempts(rid)] == ["done"]


# --- SQL store only -----------------------------------------------------------------------------


def test_a_plan_naming_a_missing_table_is_invalid(sql_engine: Engine) -> None:
    store = SqlRecordStore(sql_engine, DeletionPlan((PlanStep("no_such_table", "record_id"),)))
    with pytest.raises(DeletionPlanInvalid, match="no_such_table"):
        store.delete_batch(new_id(), 10, 1)


def test_a_plan_naming_a_missing_column_is_invalid(sql_engine: Engine) -> None:
    store = SqlRecordStore(sql_engine, DeletionPlan((PlanStep("record_rows", "owner_id"),)))
    with pytest.raises(DeletionPlanInvalid, match=r"record_rows\.owner_id"):
        store.delete_batch(new_id(), 10, 1)


@pytest.mark.unit
@pytest.mark.parametrize(
    "text",
    ["", "record_rows", "record_rows:", "a:b:c:d", "record-rows:record_id", "t:k;DROP TABLE records", " , "],
)
def test_plan_text_that_is_not_identifiers_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="deletion plan"):
        DeletionPlan.parse(text)


@pytest.mark.unit
def test_plan_text_round_trips() -> None:
    plan = DeletionPlan.parse("record_rows:record_id, records:id:id")
    assert plan == builders.demo_plan()
    assert DeletionPlan.parse(str(plan)) == plan


def test_a_parsed_plan_deletes_in_its_order(sql_engine: Engine) -> None:
    store = SqlRecordStore(sql_engine, DeletionPlan.parse("record_rows:record_id,records:id"))
    rid = new_id("planned")
    store.add_record(rid, 12)
    before = store.count_rows(rid)

    results = drain(lambda: store.delete_batch(rid, 5, 1))

    assert sum(r.deleted for r in results) == before == 13
    assert store.count_rows(rid) == 0


def test_record_ids_are_bound_parameters_not_sql_text(sql_engine: Engine) -> None:
    """The statements carry the id as a parameter; its text never appears in the SQL."""
    from sqlalchemy import event

    store = builders.sql_store(sql_engine)
    rid = new_id("safe")
    store.add_record(rid, 4)
    statements: list[tuple[str, object]] = []

    def capture(conn: object, cursor: object, statement: str, parameters: object, *_: object) -> None:
        statements.append((statement, parameters))

    event.listen(sql_engine, "before_cursor_execute", capture)
    try:
        drain(lambda: store.delete_batch(rid, 2, 1))
    finally:
        event.remove(sql_engine, "before_cursor_execute", capture)

    deletes = [(s, p) for s, p in statements if s.lstrip().upper().startswith("DELETE")]
    assert deletes
    assert all(rid.value not in s for s, _ in statements)
    assert all(rid.value in repr(p) for _, p in deletes)
    assert store.count_rows(rid) == 0
