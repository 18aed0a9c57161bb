"""The failure modes, proven with real processes: real Kafka, the real Resonate server, PostgreSQL and
`record-deleter worker` processes that the tests SIGKILL, starve of their dependencies and feed
garbage.

Each test prints one `RELIABILITY {json}` line with its figures (run with `-s` to see it; set
RD_RELIABILITY_OUT=FILE to collect them; `benchmarks/reliability.py` repeats the scenarios and
prints the tables of RELIABILITY.md). Tests that stop a service restart it in a `finally`.

What "batches executed" means: every delete batch writes one `deletion_audit` row in its own
transaction, so the audit table counts executed batches exactly. A record of R rows (+ its
`records` row) needs ceil((R+1)/batch) batches; a crash can add at most the one batch that had
committed but not yet been checkpointed when the process died.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from record_deleter.domain.messages import MAX_REQUEST_BYTES, encode_request
from record_deleter.domain.model import RecordId
from tests.conftest import wait_for
from tests.harness import (
    FAULT_WORKER_COMMAND,
    Deployment,
    Outcome,
    Process,
    Supervisor,
    completion_ids,
    database,
    evidence_report,
    first_handoffs,
    free_port,
    held_partitions,
    holders,
    outage,
    report,
    scrape,
    topic_reader,
)

pytestmark = pytest.mark.system


@pytest.fixture
def deployment_factory(tmp_path: Path):
    made: list[Deployment] = []

    def make(name: str, **kwargs):  # type: ignore[no-untyped-def]
        dep = Deployment.create(tmp_path, name, **kwargs)
        made.append(dep)
        return dep

    yield make
    for dep in made:
        dep.close()


def wait_all_answered(reader, dep: Deployment, timeout: float, message: str = "") -> float:  # type: ignore[no-untyped-def]
    """Wait until every valid request produced so far has an answer (completion or failure, read
    by its request-partition/-offset headers); returns time.monotonic() when it happened."""

    def unanswered() -> list[tuple[int, int]]:
        answered = {
            (int(m.headers["request-partition"]), int(m.headers["request-offset"])) for m in reader.poll()
        }
        return [where for where in dep.requests() if where not in answered]

    deadline = time.monotonic() + timeout
    while missing := unanswered():
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout:.0f}s waiting for: {message or 'an answer to every request'}; "
                f"{len(missing)} request(s) without one: {missing[:10]}",
                pytrace=False,
            )
        time.sleep(0.2)
    return time.monotonic()


def wait_all_completed(reader, records, timeout: float, message: str = "") -> float:  # type: ignore[no-untyped-def]
    """Wait until every record has a completion; returns time.monotonic() when it happened.

    At the deadline, fail naming the records still without one."""
    wanted = {r.id for r in records}
    deadline = time.monotonic() + timeout
    while not wanted <= completion_ids(reader):
        if time.monotonic() > deadline:
            missing = sorted(wanted - completion_ids(reader))
            pytest.fail(
                f"timed out after {timeout:.0f}s waiting for: "
                f"{message or f'a completion for each of {len(wanted)} records'}; "
                f"{len(missing)} without one: {missing[:10]}",
                pytrace=False,
            )
        time.sleep(0.2)
    return time.monotonic()


# --------------------------------------------------------------------------------------------- 1
@pytest.mark.parametrize(
    ("pause", "rows"),
    [
        # the default: the kill lands inside a running step, which deletes batch after batch for
        # up to WORKFLOW_STEP_SECONDS (0.5 s) before it checkpoints
        pytest.param("0", 4000, id="no-pause"),
        pytest.param("0.8", 60, id="durable-sleep"),  # the kill lands (mostly) in a durable sleep
    ],
)
def test_sigkill_mid_deletion_then_restart_resumes_every_workflow(
    deployment_factory, tmp_path, pause: str, rows: int
) -> None:
    """One worker, SIGKILLed while 8 records are half deleted, restarted: every workflow resumes
    where it was (batches executed <= needed + 1), rows all gone, one completion per record."""
    dep = deployment_factory("kill1", partitions=2, WORKFLOW_PAUSE_SECONDS=pause)
    records = dep.seed([rows] * 8)
    needed = sum(r.needed for r in records)
    started = time.monotonic()
    with (
        topic_reader(dep.bootstrap, dep.completion_topic) as reader,
        Supervisor(dep.env, tmp_path, 1, restart=False) as workers,
    ):
        dep.request(records)
        wait_for(lambda: dep.lag() == 0, timeout=60, message="every request handed off and committed")
        wait_for(lambda: dep.batches_done() >= needed // 3, timeout=60, message="a third of the batches done")
        workers.kill(0)
        killed_at = time.monotonic()
        done_at_kill = dep.batches_done()
        assert done_at_kill < needed, "the kill must land mid-deletion"
        assert len(completion_ids(reader)) < len(records), "records must be in flight at the kill"
        # the supervisor's job: start the worker again
        with Supervisor(dep.env, tmp_path, 1, name="restarted") as again:
            wait_for(
                lambda: dep.batches_done() > done_at_kill,
                timeout=60,
                interval=0.1,
                message="a batch run by the restarted worker (workflows resumed)",
            )
            resumed_at = time.monotonic()
            completed_at = wait_all_completed(
                reader,
                records,
                timeout=90,
                message="every record completed after the restart (a workflow stuck here was not "
                "re-dispatched to the worker group: RELIABILITY.md, finding F1)",
            )
            outcome = Outcome.collect(dep, records, reader)
            assert again.crashes() == [], again.all_logs()[-4000:]
    again.assert_clean_stop()
    outcome.check(max_extra_per_record=1, max_copies=1)
    assert dep.lag() == 0
    report(
        f"sigkill-restart[pause={pause}]",
        workers=1,
        crashes_injected=1,
        worker_exits=0,
        messages=len(records),
        batches_done_at_kill=done_at_kill,
        first_batch_after_kill_seconds=round(resumed_at - killed_at, 1),
        recovery_seconds=round(completed_at - killed_at, 1),
        run_seconds=round(time.monotonic() - started, 1),
        **outcome.figures(),
    )


# --------------------------------------------------------------------------------------------- 2
def test_a_backlog_spreads_over_two_workers_started_on_it(deployment_factory, tmp_path) -> None:
    """A backlog of 400 small records on 4 partitions, then two workers started at once: each
    deletes a share of it. The consumer group protocol hands the second its partitions as it
    joins without stopping the first, and WORKER_MAX_IN_FLIGHT keeps the first from taking the
    whole backlog in hand before then (with the old bound of 1,000 it ran every record). The
    benchmark's scale-out figures hold the 35-65% goal; this guards the behaviour."""
    dep = deployment_factory("scale-out", partitions=4, WORKFLOW_PAUSE_SECONDS="0")
    assert "WORKER_MAX_IN_FLIGHT" not in dep.env, "the default bound is what is under test"
    records = dep.seed([5] * 400)
    dep.request(records)
    with (
        topic_reader(dep.bootstrap, dep.completion_topic) as reader,
        Supervisor(dep.env, tmp_path, 2, restart=False) as workers,
    ):
        wait_all_completed(reader, records, timeout=240, message="the backlog answered")
        outcome = Outcome.collect(dep, records, reader)
        ran = [
            {str(e["record_id"]) for e in workers.slots[i].procs[-1].events.all() if e.name == "step_deleted"}
            for i in (0, 1)
        ]
    workers.assert_clean_stop()
    outcome.check(max_extra_per_record=0, max_copies=1)
    assert ran[0] | ran[1] == {r.id for r in records}
    shares = [len(r) / len(records) for r in ran]
    assert min(shares) >= 0.15, f"one worker ran almost the whole backlog: shares {shares}"
    report("scale-out-two-workers", workers=2, records=len(records), shares=[round(x, 2) for x in shares])


def test_two_workers_the_one_holding_the_work_is_killed_the_other_completes_it(
    deployment_factory, tmp_path
) -> None:
    """Two workers in one Kafka group and one Resonate group; the requests sit on one partition,
    so one worker hands every request off (and holds every request workflow), while the deletion
    attempts are spread over the group. SIGKILL the worker holding most deletions and do not
    restart it: after the ttl the server hands its tasks to the survivor, which completes them."""
    dep = deployment_factory("failover", partitions=1, WORKFLOW_PAUSE_SECONDS="0.8")
    records = dep.seed([50] * 6)
    ids = [r.id for r in records]
    needed = sum(r.needed for r in records)
    started = time.monotonic()
    with (
        topic_reader(dep.bootstrap, dep.completion_topic) as reader,
        Supervisor(dep.env, tmp_path, 2, restart=False) as workers,
    ):
        wait_for(
            lambda: all("worker started" in workers.log_text(i) for i in (0, 1)),
            timeout=60,
            message="both workers started",
        )
        dep.request(records)
        wait_for(lambda: dep.lag() == 0, timeout=60, message="every request handed off and committed")
        wait_for(lambda: dep.batches_done() >= needed // 4, timeout=60, message="deletion under way")
        held = holders(workers, ids)
        holder = max(held, key=lambda k: held[k])
        survivor = 1 - holder
        assert held[holder] > 0, f"a worker holds deletions under way: {held}"
        workers.kill(holder)
        killed_at = time.monotonic()
        done_at_kill = dep.batches_done()
        assert done_at_kill < needed
        completed_at = wait_all_completed(reader, records, timeout=90, message="the survivor completes all")
        outcome = Outcome.collect(dep, records, reader)
        assert workers.alive() == [survivor]
        assert workers.crashes() == [], workers.all_logs()[-4000:]
        took_over = holders(workers, ids)[survivor]
    workers.assert_clean_stop()
    outcome.check(max_extra_per_record=1, max_copies=1)
    assert took_over == len(ids), f"the survivor ran batches of {took_over} of {len(ids)} records"
    assert dep.lag() == 0
    # The evidence of each record tells the same story: the killed worker's batches, then the
    # survivor's, every row accounted for, one intact chain across both.
    workers_per_record = []
    for r in records:
        code, evidence = evidence_report(r.id, dep.env)
        assert code == 0, evidence["chain"]
        [attempt] = evidence["attempts"]
        assert attempt["state"] == "done"
        assert attempt["final_counts"] == {"record_rows": 0, "records": 0}
        assert sum(b["tables"]["record_rows"] for b in attempt["batch_rows"]) == 50
        assert len(attempt["answers"]) == 1
        workers_per_record.append(len({b["worker"] for b in attempt["batch_rows"]}))
    assert 2 in workers_per_record, (
        f"a deletion began on the killed worker and ended on the survivor: {workers_per_record}"
    )
    report(
        "failover-two-workers",
        workers=2,
        crashes_injected=1,
        worker_exits=0,
        messages=len(records),
        batches_done_at_kill=done_at_kill,
        recovery_seconds=round(completed_at - killed_at, 1),
        run_seconds=round(time.monotonic() - started, 1),
        **outcome.figures(),
    )


# --------------------------------------------------------------------------------------------- 3
def test_same_record_id_many_times_across_partitions_and_after_completion(
    deployment_factory, tmp_path
) -> None:
    """Each record id is produced to all 3 partitions (two workers own them), twice on one, and
    again after it completed: every distinct request message gets exactly one answer; requests
    that arrive while a deletion runs share it; those after it completed open a new attempt,
    which deletes nothing more. No row is deleted twice, no batch re-runs."""
    dep = deployment_factory("dups", partitions=3, WORKFLOW_PAUSE_SECONDS="0.3")
    records = dep.seed([25] * 10)
    offsets: dict[str, set[int]] = {r.id: set() for r in records}
    started = time.monotonic()
    with (
        topic_reader(dep.bootstrap, dep.completion_topic) as reader,
        Supervisor(dep.env, tmp_path, 2, restart=False) as workers,
    ):
        wait_for(
            lambda: all(0 < len(held_partitions(workers.log_text(i))) < 3 for i in (0, 1)),
            timeout=60,
            message="both workers in the group, the 3 partitions split between them",
        )
        for partition in (0, 1, 2, 1):
            for r, (_p, off) in zip(records, dep.request(records, partition=partition), strict=True):
                offsets[r.id].add(off)
        # the reference example's array format, too: ["id", n]
        for r, (_p, off) in zip(
            records,
            dep.produce([json.dumps([r.id, 7]).encode() for r in records], partition=2),
            strict=True,
        ):
            offsets[r.id].add(off)
        first_wave = 5 * len(records)
        wait_all_answered(reader, dep, timeout=90)
        # after completion: every id once more on every partition
        for partition in (0, 1, 2):
            dep.request(records, partition=partition)
        wait_all_answered(reader, dep, timeout=90)
        wait_for(lambda: dep.lag() == 0, timeout=60, message="every duplicate consumed and committed")
        outcome = Outcome.collect(dep, records, reader)
        assert workers.crashes() == []
        logs = workers.all_logs()
    workers.assert_clean_stop()
    outcome.check(max_extra_per_record=0, max_copies=1)
    assert outcome.duplicates == 0
    assert len(outcome.requests) == 8 * len(records)
    for r in records:
        answers = outcome.completions[r.id]
        assert len(answers) == 8, f"{r.id}: one answer per request message"
        # every row deleted once, whatever attempt did it
        by_attempt = {c.headers["attempt"]: int(c.headers["rows-deleted"]) for c in answers}
        assert sum(by_attempt.values()) == r.rows + 1, f"{r.id}: rows per attempt {by_attempt}"
        assert outcome.attempts[r.id] >= 2, f"{r.id}: the requests after completion opened a new attempt"
        assert {json.loads(c.value or b"")[1] for c in answers} >= offsets[r.id]
    assert logs.count("handed_off") >= first_wave + 3 * len(records)
    report(
        "duplicate-requests",
        workers=2,
        crashes_injected=0,
        worker_exits=0,
        messages=first_wave + 3 * len(records),
        requests_per_record=8,
        run_seconds=round(time.monotonic() - started, 1),
        **outcome.figures(),
    )


# --------------------------------------------------------------------------------------------- 4
def test_crash_between_publish_and_its_checkpoint_republishes_once_with_the_same_key(
    deployment_factory, tmp_path
) -> None:
    """A worker that SIGKILLs itself right after the broker confirmed a completion (before the
    step's promise is resolved). The worker that takes over re-runs publish_completion only: two
    identical completions with the same idempotency-key, and no delete batch re-executed."""
    dep = deployment_factory("publish-window", partitions=1, WORKFLOW_PAUSE_SECONDS="0.5")
    quick, *slow = dep.seed([25, 60, 60])  # `quick` completes first (~1.5 s) and triggers the fault
    records = [quick, *slow]
    started = time.monotonic()
    with topic_reader(dep.bootstrap, dep.completion_topic) as reader:
        with Supervisor(
            dep.env, tmp_path, 1, name="faulty", command=FAULT_WORKER_COMMAND, restart=False
        ) as f:
            dep.request(records)
            wait_for(lambda: f.exits, timeout=60, message="the fault worker to publish and die")
            assert f.exits[0].code == -signal.SIGKILL, f.all_logs()[-3000:]
            assert "fault_worker: published" in f.log_text(0)
        died_at = time.monotonic()
        audit_at_death = dep.audit()
        assert completion_ids(reader) == {quick.id}, "exactly the quick record was published"
        assert audit_at_death.get(quick.id) == quick.needed
        with Supervisor(dep.env, tmp_path, 1) as workers:
            completed_at = wait_all_completed(reader, records, timeout=90)
            wait_for(
                lambda: len([m for m in reader.poll() if m.key == quick.id.encode()]) >= 2,
                timeout=30,
                message="the re-run publish of the quick record",
            )
            wait_for(lambda: dep.lag() == 0, timeout=60, message="offsets committed")
            outcome = Outcome.collect(dep, records, reader)
            assert workers.crashes() == []
    workers.assert_clean_stop()
    outcome.check(max_extra_per_record=1, max_copies=2)
    copies = outcome.completions[quick.id]
    assert len(copies) == 2, "the publish window re-publishes exactly once"
    [key] = {c.headers["idempotency-key"] for c in copies}
    assert key.startswith(b"rd:req:"), "the key names the request, so a consumer can drop the copy"
    # the record whose publish was re-run did not re-run a single delete batch
    assert outcome.audit[quick.id] == quick.needed == audit_at_death[quick.id]
    for r in slow:
        assert len(outcome.completions[r.id]) == 1
    report(
        "publish-window",
        workers=1,
        crashes_injected=1,
        worker_exits=0,
        messages=len(records),
        recovery_seconds=round(completed_at - died_at, 1),
        extra_publishes_of_faulted_record=len(copies) - 1,
        delete_batches_rerun_for_faulted_record=outcome.audit[quick.id] - audit_at_death[quick.id],
        run_seconds=round(time.monotonic() - started, 1),
        **outcome.figures(),
    )


# --------------------------------------------------------------------------------------------- 5
OUTAGES = {
    # service, SIGKILL it?, seconds down, settings that size the retry budgets below the outage
    # where the design is to exit (crash-only) and above it where the design is to ride it out
    "resonate": (
        True,
        10.0,
        {"RESONATE_REQUEST_RETRIES": "3", "WORKER_HANDOFF_RETRY_SECONDS": "5"},
    ),
    "kafka": (
        True,
        8.0,
        {"BROKER_UNAVAILABLE_AFTER_SECONDS": "5", "BROKER_DELIVERY_TIMEOUT_SECONDS": "10"},
    ),
    # Steps retry without limit: a database down far longer than the old bounded budget (10
    # attempts of 0.2-1 s here, ~6 s) makes records wait, never fail.
    "postgres": (
        False,
        15.0,
        {"WORKFLOW_STEP_RETRY_DELAY": "0.2", "WORKFLOW_STEP_RETRY_MAX_DELAY": "1"},
    ),
}


@pytest.mark.parametrize("service", list(OUTAGES))
def test_dependency_outage_mid_run_loses_nothing(deployment_factory, tmp_path, service: str) -> None:
    """Two supervised workers; `service` goes down mid-run (requests still arriving when the broker
    is up) and comes back: every record completes, none is lost, offsets all committed. Workers
    may exit while it is down (exit 3 or the SDK's exit 1): the supervisor restarts them and
    the test reports every exit."""
    kill, down_for, settings = OUTAGES[service]
    dep = deployment_factory(f"out-{service}", partitions=3, WORKFLOW_PAUSE_SECONDS="0.5", **settings)
    records = dep.seed([40] * 30)
    first, second = records[:15], records[15:]
    started = time.monotonic()
    with (
        topic_reader(dep.bootstrap, dep.completion_topic) as reader,
        Supervisor(dep.env, tmp_path, 2, restart_delay=1.0) as workers,
    ):
        dep.request(first)
        wait_for(lambda: dep.batches_done() >= 10, timeout=60, message="deletion under way")
        with outage(service, kill=kill) as times:
            if service != "kafka":
                dep.request(second)  # arrives while the dependency is down
            time.sleep(down_for)  # the outage itself
        back_at = times["up_at"]
        if service == "kafka":
            dep.request(second)
        completed_at = wait_all_answered(reader, dep, timeout=180)
        wait_for(lambda: dep.lag() == 0, timeout=120, interval=1, message="every offset committed")
        outcome = Outcome.collect(dep, records, reader)
        crashes = workers.crashes()
        store_errors = workers.all_logs().count('"event": "store_error"')
    workers.assert_clean_stop()
    crash_count = len(crashes)
    outcome.check(max_extra_per_record=1 + crash_count, max_copies=1 + crash_count)  # no failure answer
    if service == "postgres":
        assert store_errors >= 10, f"the steps waited through the outage ({store_errors} retries seen)"
    report(
        f"outage[{service}]",
        workers=2,
        down_seconds=round(back_at - times["down_at"], 1),
        crashes_injected=0,
        worker_exits=crash_count,
        worker_exit_codes=workers.exit_codes(),
        messages=len(records),
        recovery_seconds=round(completed_at - back_at, 1),
        store_errors_retried=store_errors,
        run_seconds=round(time.monotonic() - started, 1),
        **outcome.figures(),
    )


# --------------------------------------------------------------------------------------------- 6
def poison_values() -> dict[str, bytes | None]:
    """One request value per poison class (what a broken or hostile producer could send)."""
    js = lambda v: json.dumps(v).encode()  # noqa: E731
    return {
        "empty value": b"",
        "null value (tombstone)": None,
        "not UTF-8": b"\xff\xfe\xfd",
        "UTF-8 with a BOM": b'\xef\xbb\xbf"bom-id"',
        "huge payload (> 64 KiB)": js("x" * (MAX_REQUEST_BYTES + 6000)),
        "huge array whose first element is a valid id": js(["valid-id", "y" * (MAX_REQUEST_BYTES + 10)]),
        "not JSON": b"delete everything please",
        "truncated JSON": b'"unterminated',
        "JSON object": js({"record_id": "abc"}),
        "JSON number": b"42",
        "JSON float overflow": b"1e999",
        "JSON null": b"null",
        "JSON true": b"true",
        "empty JSON array": b"[]",
        "array of a number": js([42]),
        "nested array": js([["abc"]]),
        "empty id": js(""),
        "NUL": js("a\u0000b"),
        "newline": js("line\nbreak"),
        "tab": js("\t"),
        "DEL and bell": js("a\u007f\u0007"),
        "escape sequence": js("\u001b[31mred"),
        "lone surrogate": b'"\\ud800"',
        "right-to-left override": js("abc\u202edcba"),
        "line separator": js("a\u2028b"),
        "over-long id (129)": js("a" * 129),
        "over-long id (60 000)": js("b" * 60_000),
    }


def hostile_ids() -> dict[str, bytes]:
    """Ids a hostile or careless producer could send that are valid record ids (real systems use
    slashes, dots, spaces, non-ASCII): each must be answered, and delete nothing of anyone else's."""
    js = lambda v: json.dumps(v).encode()  # noqa: E731
    return {
        "SQL injection": js("x'; DROP TABLE records; --"),
        "SQL tautology": js("1 OR 1=1"),
        "SQL LIKE wildcard": js("%"),
        "path traversal": js("../../etc/passwd"),
        "slash": js("a/b"),
        "dot (step-id collision)": js("rec.1"),
        "URL metacharacters": js("a?b=c#d&e"),
        "percent-encoded traversal": js("%2e%2e%2f"),
        "backslash": js("a\\b"),
        "space": js("a b"),
        "non-ASCII letters": js("r\u00e9cord"),
        "e-mail address": js("ada@example.com"),
    }


def test_poison_stream_mixed_into_good_traffic(deployment_factory, tmp_path) -> None:
    """Every poison class, interleaved with good requests on all partitions: every good request is
    answered (hostile-looking but valid ids too, deleting nothing of anyone else's), every bad
    message is on the dead-letter topic (original bytes, a dlq-error reason, where it came from),
    the worker never exits and the group's committed lag ends at 0."""
    dep = deployment_factory("poison", partitions=2, WORKFLOW_PAUSE_SECONDS="0")
    records = dep.seed([15] * 20)
    bystander = dep.seed_bystander(9)  # never requested: its rows must survive every id
    poison = poison_values()
    good = [encode_request(RecordId(r.id)) for r in records] + list(hostile_ids().values())
    bad = list(poison.values())
    stream: list[bytes | None] = []
    kinds: list[str | None] = []
    for i in range(max(len(good), len(bad))):
        for item, kind in ((good, None), (bad, "bad")):
            if i < len(item):
                stream.append(item[i])
                kinds.append(kind if kind is None else list(poison)[i])
    started = time.monotonic()
    with (
        topic_reader(dep.bootstrap, dep.completion_topic) as reader,
        topic_reader(dep.bootstrap, dep.dead_letter_topic) as dlq,
        Supervisor(dep.env, tmp_path, 1) as workers,
    ):
        placed = dep.produce(stream)
        wait_all_answered(reader, dep, timeout=90)
        wait_for(lambda: len(dlq.poll()) >= len(bad), timeout=60, message=f"{len(bad)} dead letters")
        wait_for(lambda: dep.lag() == 0, timeout=60, message="every offset committed")
        outcome = Outcome.collect(dep, records, reader)
        assert workers.exits == [], f"the worker exited: {workers.exits}\n{workers.all_logs()[-4000:]}"
        letters = list(dlq.poll(1.0))
    workers.assert_clean_stop()
    outcome.check(max_extra_per_record=0, max_copies=1)
    by_origin = {(int(m.headers["dlq-partition"]), int(m.headers["dlq-offset"])): m for m in letters}
    assert len(letters) == len(bad), "one dead letter per poison message, no more"
    for value, kind, where in zip(stream, kinds, placed, strict=True):
        if kind is None:
            continue
        letter = by_origin.get(where)
        assert letter is not None, f"{kind}: not on the dead-letter topic"
        assert letter.value == (value or b""), f"{kind}: original bytes not preserved"
        assert letter.headers["dlq-value-null"] == (b"true" if value is None else b"false")
        assert letter.headers["dlq-topic"] == dep.request_topic.encode()
        assert letter.headers["dlq-error"], f"{kind}: no reason"
    # the SQL-looking ids were never executed as SQL and '%' matched nothing: the bystander is intact
    assert database.rows_of(dep.engine, bystander.id) == bystander.rows + 1
    hostile = set(hostile_ids().values())
    hostile_answers = [
        outcome.answers[where] for value, where in zip(stream, placed, strict=True) if value in hostile
    ]
    assert len(hostile_answers) == len(hostile_ids())
    assert all(a[0].headers["rows-deleted"] == b"0" for a in hostile_answers)
    report(
        "poison-stream",
        workers=1,
        crashes_injected=0,
        worker_exits=len(workers.crashes()),
        messages=len(stream),
        poison_messages=len(bad),
        poison_classes=len(poison),
        dead_lettered=len(letters),
        run_seconds=round(time.monotonic() - started, 1),
        **outcome.figures(),
    )


@pytest.mark.parametrize(
    "kind",
    [
        "deeply nested JSON",  # json.loads raises RecursionError, not ValueError
        "value near the broker's size limit",  # its dead-letter copy (+ headers) is too large to send
    ],
)
def test_poison_pills_that_could_crash_the_worker(deployment_factory, tmp_path, kind: str) -> None:
    """Bad input that escapes the usual parse errors must still be dead-lettered, not crash-loop the
    worker and block its partition (see RELIABILITY.md, findings F2 and F3)."""
    dep = deployment_factory(
        "pill", partitions=1, WORKFLOW_PAUSE_SECONDS="0", WORKER_HANDOFF_RETRY_SECONDS="8"
    )
    records = dep.seed([5] * 3)
    value = b"[" * 30_000 + b"]" * 30_000 if kind == "deeply nested JSON" else b"z" * 999_900
    with (
        topic_reader(dep.bootstrap, dep.completion_topic) as reader,
        topic_reader(dep.bootstrap, dep.dead_letter_topic) as dlq,
        Supervisor(dep.env, tmp_path, 1) as workers,
    ):
        dep.produce([value])
        dep.request(records)  # behind it on the same partition
        wait_for(
            lambda: len(dlq.poll()) >= 1 or len(workers.exits) >= 2,
            timeout=60,
            message="the pill dead-lettered (or the worker crash-looping)",
        )
        assert workers.exits == [], (
            f"{kind}: the worker exited {[e.code for e in workers.exits]} and, restarted, meets the "
            f"same message again:\n{workers.all_logs()[-3000:]}"
        )
        wait_all_completed(reader, records, timeout=60, message="the records queued behind the pill")
        assert dlq.poll()[0].headers["dlq-error"]


def status_of(port: int, path: str) -> tuple[int, dict[str, str]]:
    """HTTP status and checks of the worker's status endpoint at `path`."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, json.loads(resp.read())["checks"]
    except urllib.error.HTTPError as err:
        body = err.read()
        return err.code, json.loads(body)["checks"] if body.startswith(b"{") else {}


def test_prometheus_endpoint_counts_what_happened(deployment_factory, tmp_path) -> None:
    """WORKER_METRICS_PORT serves the worker's counters (after a small run they add up), its
    liveness and readiness; any other path is 404."""
    port = free_port()
    dep = deployment_factory(
        "metrics", partitions=1, WORKFLOW_PAUSE_SECONDS="0.3", WORKER_METRICS_PORT=str(port)
    )
    records = dep.seed([34, 7, 0, 55, 12])
    values = [encode_request(RecordId(r.id)) for r in records]
    values += [values[0], b"not json", None]  # a second request for one id, and two poison messages
    started = time.monotonic()
    with (
        topic_reader(dep.bootstrap, dep.completion_topic) as reader,
        Supervisor(dep.env, tmp_path, 1) as workers,
    ):
        dep.produce(values)
        wait_for(lambda: scrape(port).get("record_deleter_messages_handed_off_total", 0) >= 1, timeout=60)
        in_flight_seen = scrape(port).get("record_deleter_workflows_in_flight", 0)
        wait_all_answered(reader, dep, timeout=60)
        wait_for(
            lambda: scrape(port).get("record_deleter_messages_consumed_total") == len(values),
            timeout=30,
            message="every message counted",
        )
        m = scrape(port)
        audit = dep.audit()
        ready, live, other = (status_of(port, path) for path in ("/readyz", "/healthz", "/nope"))
        assert workers.exits == []
    assert ready == (200, {"partitions": "ok", "resonate": "ok", "database": "ok"})
    assert live == (200, {"loop": "ok", "sdk": "ok"})
    assert other[0] == 404
    rows = sum(r.rows + 1 for r in records)
    assert m["record_deleter_messages_consumed_total"] == 8
    assert m["record_deleter_messages_handed_off_total"] == 6  # 5 records + the second request
    assert m["record_deleter_messages_duplicate_total"] == 0  # no message was delivered twice
    assert m["record_deleter_messages_dead_lettered_total"] == 2
    attempts = dep.attempts()
    # the second request either joined the first deletion or opened a second, one-batch attempt
    assert (
        m["record_deleter_batches_deleted_total"]
        == sum(audit.values())
        == sum(r.needed for r in records) + (attempts[records[0].id] - 1)
    )
    assert m["record_deleter_rows_deleted_total"] == rows
    assert m["record_deleter_completions_published_total"] == 6  # one answer per request
    assert m["record_deleter_failures_published_total"] == 0
    assert m["record_deleter_store_errors_total"] == 0
    assert m["record_deleter_attempts_failed_total"] == 0
    assert m["record_deleter_handoff_seconds_count"] == 6
    assert 0 < m["record_deleter_handoff_seconds_sum"] < 6 * 5
    assert m.get("record_deleter_consumer_paused") == 0
    assert "record_deleter_workflows_in_flight" in m
    assert in_flight_seen > 0, (
        "record_deleter_workflows_in_flight stayed 0 while 5 workflows ran (RELIABILITY.md, finding F4)"
    )
    report(
        "metrics",
        workers=1,
        crashes_injected=0,
        worker_exits=0,
        messages=len(values),
        run_seconds=round(time.monotonic() - started, 1),
        metrics={
            k.removeprefix("record_deleter_"): v
            for k, v in sorted(m.items())
            if k.endswith(("_total", "_count", "_sum"))
        },
        workflows_in_flight_during_run=in_flight_seen,
    )


# --------------------------------------------------------------------------------------------- 7
SOAK_SECONDS = float(os.environ.get("RD_SOAK_SECONDS") or 0)  # 0: the short soak of the default suite


@pytest.mark.soak
@pytest.mark.timeout(int(SOAK_SECONDS) * 2 + 600 if SOAK_SECONDS else 300)
@pytest.mark.parametrize("membership", ["dynamic", "static"])
def test_soak_random_sigkills_of_three_workers(deployment_factory, tmp_path, membership: str) -> None:
    """Three supervised workers, requests arriving in waves, a random worker (sometimes two) SIGKILLed
    every 3-8 s for the kill window; afterwards every record is complete, lost = 0, completions per
    record = 1 except publish-window re-publishes (identical, same idempotency-key). Some records
    are requested again in later waves: every distinct request message gets its own answer.

    Default: ~150 records, a 40 s kill window. RD_SOAK_SECONDS=600: a 600 s window and ~2.5 records/s.
    RD_SOAK_SEED fixes the random schedule (printed in the summary).

    `dynamic`: the defaults (the KIP-848 consumer protocol; a killed worker's partitions move after
    the session timeout). `static`: what README recommends where a supervisor restarts workers in
    place (systemd, a StatefulSet): the classic protocol and a group instance id per worker, so a
    restarted worker takes its partitions straight back."""
    window = SOAK_SECONDS or 40.0
    wave_every = 5.0 if not SOAK_SECONDS else 10.0
    waves = int(window // wave_every)
    total = 150 if not SOAK_SECONDS else int(window * 2.5)
    seed = int(os.environ.get("RD_SOAK_SEED") or random.SystemRandom().randrange(1_000_000))
    rng = random.Random(seed)
    static = membership == "static"
    dep = deployment_factory(
        "soak",
        partitions=6,
        batch_size=20,
        WORKFLOW_PAUSE_SECONDS="0.2",
        RESONATE_TTL="3",
        **({"BROKER_GROUP_PROTOCOL": "classic"} if static else {}),
    )
    records = dep.seed([round(10 ** rng.uniform(0, 2.5)) for _ in range(total)])
    per_wave = -(-total // waves)
    plan = [records[i : i + per_wave] for i in range(0, total, per_wave)]
    kills: list[float] = []
    kill_walls: list[float] = []
    killed: list[Process] = []
    produced_at: dict[str, float] = {}
    started = time.monotonic()
    with (
        topic_reader(dep.bootstrap, dep.completion_topic) as reader,
        Supervisor(dep.env, tmp_path, 3, restart_delay=0.5, static_members=static) as workers,
    ):
        next_wave, next_kill = started, started + rng.uniform(3, 8)
        while time.monotonic() - started < window or plan:
            now = time.monotonic()
            if plan and now >= next_wave:
                wave = plan.pop(0)
                # plus re-requests of earlier records (done by now, or still running): each is a
                # distinct message that must get an answer of its own
                earlier = [r for r in records if r.id in produced_at]
                again = rng.sample(earlier, min(len(earlier), len(wave) // 5))
                produced_at.update(dict.fromkeys((r.id for r in wave), time.time()))
                dep.request([*wave, *again])
                next_wave = now + wave_every
            if now - started < window and now >= next_kill:
                alive = workers.alive()
                victims = rng.sample(alive, min(len(alive), 2 if rng.random() < 0.2 else 1))
                for v in victims:
                    killed.append(workers.slots[v].procs[-1])
                    workers.kill(v)
                    kills.append(time.monotonic())
                    kill_walls.append(time.time())
                next_kill = time.monotonic() + rng.uniform(3, 8)
            time.sleep(0.05)  # the schedule's tick
        last_kill = kills[-1] if kills else started
        completed_at = wait_all_answered(
            reader,
            dep,
            timeout=200 if not SOAK_SECONDS else SOAK_SECONDS + 300,
            message="an answer to every soak request",
        )
        wait_for(lambda: dep.lag() == 0, timeout=120, interval=1, message="every offset committed")
        outcome = Outcome.collect(dep, records, reader)
        crashes = workers.crashes()
        handed = first_handoffs(workers)
    workers.assert_clean_stop()
    waits = sorted(handed[r.id] - produced_at[r.id] for r in records)
    slowest = sorted(records, key=lambda r: produced_at[r.id] - handed[r.id])[:5]
    in_flight_at_kills = sum(unanswered(p) for p in killed)
    failures = len(kills) + len(crashes)
    outcome.check(max_extra_per_record=failures, max_copies=1 + failures)
    extra = outcome.extra_batches
    report(
        "soak",
        seed=seed,
        workers=3,
        membership=membership,
        kill_window_seconds=window,
        crashes_injected=len(kills),
        worker_exits=len(crashes),
        worker_exit_codes=workers.exit_codes(),
        messages=total,
        max_extra_batches_per_record=max(extra.values(), default=0),
        handoff_wait_median_seconds=round(waits[len(waits) // 2], 1),
        handoff_wait_max_seconds=round(waits[-1], 1),
        recovery_seconds=round(completed_at - last_kill, 1),
        # the five longest waits, each with the kills (seconds after its production) it waited through
        slowest_handoffs=[
            {
                "wait": round(handed[r.id] - produced_at[r.id], 1),
                "kills_at": [
                    round(k - produced_at[r.id], 1)
                    for k in kill_walls
                    if produced_at[r.id] - 15 < k < handed[r.id]
                ],
            }
            for r in slowest
        ],
        run_seconds=round(time.monotonic() - started, 1),
        in_flight_on_killed_workers=in_flight_at_kills,
        republished_per_in_flight=round(outcome.duplicates / max(in_flight_at_kills, 1), 3),
        **outcome.figures(),
    )


def unanswered(process: Process) -> int:
    """Requests a (killed) worker process handed off and did not answer: in flight when it died
    (a redelivered request, whose workflow existed already, is not counted)."""
    events = process.events.all()
    handed = {(e["partition"], e["offset"]) for e in events if e.name == "handed_off"}
    answered_or_elsewhere = {
        (e["partition"], e["offset"])
        for e in events
        if e.name in ("completion_published", "failure_published", "duplicate")
    }
    return len(handed - answered_or_elsewhere)
