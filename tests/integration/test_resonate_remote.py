"""The Resonate runtime adapter against a real Resonate server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.adapters.resonate_sdk_patches import KeepAliveRemoteStore
from record_deleter.adapters.sql_migrations import prepare_demo_database
from record_deleter.adapters.sql_store import SqlRecordStore
from record_deleter.domain.errors import HandOffUnavailable
from record_deleter.domain.model import InboundMessage, RecordId
from record_deleter.entrypoints.cli import main
from tests import builders
from tests.conftest import service_endpoint, wait_for
from tests.harness import ROOT, free_port, resonate_endpoint, resonate_server, unique

pytestmark = pytest.mark.integration


@pytest.fixture
def endpoint() -> tuple[str, str, str]:
    url, poll_port = resonate_endpoint()
    host, _, port = url.rpartition(":")
    return host, port, poll_port


@pytest.fixture
def broker() -> InMemoryBroker:
    b = InMemoryBroker()
    b.create_topic("done")
    b.create_topic("failed")
    return b


@pytest.fixture
def runtime(endpoint, broker):
    host, port, poll_port = endpoint
    store = InMemoryRecordStore()
    group = unique("it")
    rt = builders.runtime(
        builders.resonate("remote", host=host, store_port=port, message_source_port=poll_port, group=group),
        store,
        builders.publisher(broker, "done", "failed"),
        params=builders.workflow_params(batch_size=10),
        retry=builders.step_retry(delay=0.1),
        namespace=group,  # durable ids unique to this test on the shared server
        target=group,  # remote: the attempt workflows are dispatched to the workers' group
    )
    rt.start_runtime()
    rt.store = store  # type: ignore[attr-defined]
    yield rt
    rt.stop()


def request(record_id: RecordId, offset: int) -> InboundMessage:
    return InboundMessage(
        "requests", 0, offset, json.dumps(record_id.value).encode(), None, (), 5_000 + offset
    )


def test_a_request_runs_to_completion_through_the_server(runtime, broker) -> None:
    rid = RecordId(unique("rec"))
    runtime.store.add_record(rid, 35)
    m = request(rid, 12)
    runtime.start(rid, m)
    result = runtime.wait(runtime.request_key(m), timeout=60)
    assert result == {
        "record_id": rid.value,
        "attempt": 1,
        "deleted": True,
        "totals": [35, 4],
        "failure": None,
    }
    assert runtime.store.count_rows(rid) == 0
    assert [json.loads(m.value) for _, m in broker.messages("done")] == [[rid.value, 12]]


def test_a_one_batch_record_costs_the_server_two_requests_and_leaves_no_task_claimed(
    runtime, broker, monkeypatch
) -> None:
    """The workflow's creation and its result, nothing else: the first step and the answer are
    checkpointed by the ledger, and the task the server completes with the result is not completed
    a second time (Workaround 7). The server holds no task of this process afterwards."""
    sent: list[str] = []
    real_send = KeepAliveRemoteStore._send

    def counting(self, req, **kwargs):
        path = urlsplit(str(req.url)).path
        if path.startswith("/promises/") and path != "/promises/task":
            path = "/promises/{id}"
        if path != "/tasks/heartbeat":  # the SDK's heartbeat thread, on its own clock
            sent.append(f"{req.method} {path}")
        return real_send(self, req, **kwargs)

    monkeypatch.setattr(KeepAliveRemoteStore, "_send", counting)
    rid = RecordId(unique("rec"))
    runtime.store.add_record(rid, 5)
    m = request(rid, 3)
    runtime.start(rid, m)
    assert runtime.wait(runtime.request_key(m), timeout=60)["deleted"] is True
    wait_for(lambda: runtime.in_flight() == 0, timeout=10, message="the workflow left the in-flight set")
    monkeypatch.undo()

    assert sent == ["POST /promises/task", "PATCH /promises/{id}"], sent
    assert [json.loads(m.value) for _, m in broker.messages("done")] == [[rid.value, 3]]
    resonate = runtime._resonate  # the SDK client under the adapter
    assert resonate._store.tasks.heartbeat(pid=resonate._pid) == 0, "a task of this process is still claimed"


def test_redelivery_attaches_and_a_later_request_gets_a_new_attempt(runtime, broker) -> None:
    rid = RecordId(unique("dup"))
    runtime.store.add_record(rid, 25)
    first = request(rid, 1)
    runtime.start(rid, first)
    runtime.start(rid, first)  # redelivered: the same workflow
    assert runtime.wait(runtime.request_key(first), timeout=60)["totals"] == [25, 3]
    later = request(rid, 3)
    runtime.start(rid, later)  # after completion: a new attempt, which finds nothing left
    assert runtime.wait(runtime.request_key(later), timeout=60) == {
        "record_id": rid.value,
        "attempt": 2,
        "deleted": True,
        "totals": [0, 1],
        "failure": None,
    }
    assert runtime.store.batches_done(rid) == 4
    answers = [(json.loads(m.value), dict(m.headers)["attempt"]) for _, m in broker.messages("done")]
    assert answers == [([rid.value, 1], b"1"), ([rid.value, 3], b"2")]


def test_unreachable_server_is_a_hand_off_error_not_a_hang(broker) -> None:
    rt = builders.runtime(
        builders.resonate(
            "remote", host="http://127.0.0.1", store_port="9", message_source_port="9", request_retries=1
        ),
        InMemoryRecordStore(),
        builders.publisher(broker, "done", "failed"),
    )
    started = time.monotonic()
    with pytest.raises(HandOffUnavailable):
        rt.start(RecordId("x"), request(RecordId("x"), 0))
    assert time.monotonic() - started < 15


def test_durable_sleep_and_progress_survive_a_killed_worker(endpoint, tmp_path, monkeypatch, capsys) -> None:
    """Worker A runs the first batch, is SIGKILLed during the durable sleep; worker B finishes the rest."""
    host, port, poll_port = endpoint
    url = f"{host}:{port}"
    db = f"sqlite:///{tmp_path / 'resume.db'}"
    prepare_demo_database(db)
    store = builders.sql_store(db)
    rid = RecordId(unique("sleepy"))
    store.add_record(rid, 29)  # + its `records` row = 30 rows = 3 batches of 10
    group, pause = unique("grp"), "2"
    common = [rid.value, db, url, poll_port, group, pause]

    b, done_by_a = kill_worker_a_then_resume_with_b(
        common, lambda: store.batches_done(rid) >= 1, "worker A's first batch", store, rid, timeout=120
    )
    killed_at = time.monotonic()
    assert done_by_a == 1, "A was killed during the 2 s durable sleep after batch 1"
    out = json.loads(b.stdout.strip().splitlines()[-1])
    assert out["result"]["totals"] == [30, 3]
    assert store.count_rows(rid) == 0
    # completed batches were not re-run: exactly the 3 needed, at most one more if A died mid-batch
    assert store.batches_done(rid) == 3
    # the workflow resumed where it was: two more sleeps did not have to happen from scratch
    assert time.monotonic() - killed_at < 60

    monkeypatch.setenv("RESONATE_MODE", "remote")
    monkeypatch.setenv("RESONATE_URL", url)
    monkeypatch.setenv("RESONATE_MESSAGE_SOURCE_PORT", poll_port)
    monkeypatch.setenv("DATABASE_URL", db)
    assert main(["status", rid.value]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["state"], report["attempt"], report["batches"], report["rows_deleted"]) == (
        "done",
        1,
        3,
        30,
    )
    assert report["rows_left"] == 0


def test_a_worker_whose_server_stays_away_exits_instead_of_lingering(tmp_path) -> None:
    """Crash-only: past its request retries the SDK either ends the process (os._exit from its own
    thread) or stops its bridge, which `healthy()` reports so the worker exits 3. Either way the
    process must not linger claiming work it will never run."""
    binary = service_endpoint(
        "SERVICES_RESONATE_BIN", "the resonate server binary (built by scripts/services.sh)"
    )
    api, poll = free_port(), free_port()
    db = f"sqlite:///{tmp_path / 'rows.db'}"
    prepare_demo_database(db)
    store = builders.sql_store(db)
    rid = RecordId(unique("orphan"))
    store.add_record(rid, 200)
    sqlite = ["--aio-store-sqlite-path", str(tmp_path / "resonate.db")]
    with resonate_server(binary, api, poll, sqlite, tmp_path / "resonate.log") as server:
        args = [rid.value, db, f"http://127.0.0.1:{api}", str(poll), unique("g"), "0.5", "2"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.resonate_process", "watch", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: store.batches_done(rid) >= 1, timeout=30, message="first batch")
            server.kill()
            server.wait(10)
            code = proc.wait(90)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code in (1, 3), f"exit code {code}"
    assert store.count_rows(rid) > 0, "the workflow could not finish without its server"


def test_a_workflow_killed_mid_step_is_resumed_by_another_worker_of_the_group(endpoint, tmp_path) -> None:
    """No durable sleep to resume through: the server must re-dispatch the dead worker's task to
    the group (the workflow's recovery target), where worker B picks it up."""
    host, port, poll_port = endpoint
    db = f"sqlite:///{tmp_path / 'failover.db'}"
    prepare_demo_database(db)
    store = builders.sql_store(db)
    rid = RecordId(unique("busy"))
    store.add_record(rid, 2999)  # + its records row = 3,000 rows = 3,000 one-row batches, pause 0
    group = unique("grp")
    common = [rid.value, db, f"{host}:{port}", poll_port, group, "0", "30", "1"]
    b, done_by_a = kill_worker_a_then_resume_with_b(
        common, lambda: store.batches_done(rid) >= 20, "worker A under way", store, rid, timeout=180
    )
    assert done_by_a < 3000
    result = json.loads(b.stdout.strip().splitlines()[-1])["result"]
    assert store.count_rows(rid) == 0
    # No batch ran twice except, at most, the one in flight when A died (a committed batch whose
    # step was not checkpointed yet is not re-run: B's re-run of that step deletes the next rows).
    assert store.batches_done(rid) in (3000, 3001)
    # The answer's figures come from the audit trail: exact, the batches of A's last,
    # never-checkpointed step included.
    assert result["totals"] == [3000, store.batches_done(rid)]


def kill_worker_a_then_resume_with_b(
    common: list[str],
    under_way: Callable[[], bool],
    what: str,
    store: SqlRecordStore,
    rid: RecordId,
    *,
    timeout: float,
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Worker A starts the record's workflow and is SIGKILLed once `under_way()`; worker B, same
    group, runs until the workflow completes. Returns B's run and the batches A had done."""
    module = "tests.integration.resonate_process"
    a = subprocess.Popen([sys.executable, "-m", module, "start", *common], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        wait_for(under_way, timeout=60, message=what)
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        done_by_a = store.batches_done(rid)
        b = subprocess.run(
            [sys.executable, "-m", module, "resume", *common],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        if a.poll() is None:
            a.kill()
    assert b.returncode == 0, b.stderr[-2000:]
    return b, done_by_a
