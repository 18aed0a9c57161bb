"""The CLI as a user meets it: help for every subcommand, argument errors, the ledger commands, the demo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from record_deleter import __version__
from record_deleter.adapters.memory_broker import InMemoryBroker
from record_deleter.domain.errors import DeletionRejected
from record_deleter.domain.model import (
    AttemptTotals,
    BatchResult,
    InboundMessage,
    RecordId,
    RequestRef,
)
from record_deleter.domain.ports import RecordStore
from record_deleter.entrypoints.cli import NEEDS_DATABASE, main
from tests import builders

pytestmark = pytest.mark.unit

SUBCOMMANDS = [
    "worker",
    "produce",
    "setup-topics",
    "seed",
    "demo",
    "status",
    "list",
    "retry",
    "check",
    "db",
    "db upgrade",
    "config",
    "config show",
    "evidence",
    "audit",
    "audit prune",
    "dashboard",
]
# each command that needs the database, with the arguments it is otherwise valid with
DATABASE_COMMANDS = {
    "worker": [],
    "seed": ["--records", "1"],
    "status": ["some-id"],
    "list": [],
    "retry": ["some-id"],
    "check": [],
    "db": ["upgrade"],
    "evidence": ["some-id"],
    "audit": ["prune"],
    "dashboard": [],
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: a DATABASE_URL or config file from the caller's shell must not leak in."""
    for key in list(os.environ):
        if key.startswith(
            ("BROKER_", "DATABASE_", "RESONATE_", "WORKFLOW_", "WORKER_", "AUDIT_", "RECORD_DELETER_")
        ):
            monkeypatch.delenv(key)


@pytest.fixture
def in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every family in this process: in-memory database and broker, local Resonate."""
    monkeypatch.setenv("DATABASE_URL", "memory")
    monkeypatch.setenv("BROKER_KIND", "memory")
    monkeypatch.setenv("RESONATE_MODE", "local")


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command.split(), "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: record-deleter")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"record-deleter {__version__}"


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "record_deleter.entrypoints.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    for command in ("worker", "produce", "setup-topics", "seed", "demo", "status", "list", "retry", "check"):
        assert command in result.stdout


def test_every_command_that_needs_the_database_is_covered() -> None:
    assert set(DATABASE_COMMANDS) == set(NEEDS_DATABASE)


@pytest.mark.parametrize("command", sorted(DATABASE_COMMANDS))
def test_a_command_needing_the_database_refuses_to_start_without_database_url(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No silent default database: a worker must never delete rows of a database nobody named."""
    assert main([command, *DATABASE_COMMANDS[command]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("record-deleter: DATABASE_URL is not set")
    assert f"'{command}' needs the database" in err


def test_produce_needs_a_positive_count(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_KIND", "memory")
    assert main(["produce", "-n", "0"]) == 2
    assert "-n = 0: must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["seed", "--records", "1", "--rows", "-1"], "--rows = -1: must be 0 or more"),
        (["seed", "--records", "0"], "--records = 0: must be at least 1"),
        (["list", "--limit", "0"], "--limit = 0: must be at least 1"),
    ],
)
def test_a_bad_argument_exits_2_naming_it(
    args: list[str], named: str, in_memory: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert named in err
    assert err.count("\n") == 0


@pytest.mark.parametrize("command", ["status", "retry"])
@pytest.mark.parametrize(("bad", "named"), [("bad\x00id", "U+0000"), ("a\u2028b", "U+2028"), ("", "empty")])
def test_an_invalid_record_id_exits_2_naming_the_problem(
    command: str, bad: str, named: str, in_memory: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("record-deleter: record id")
    assert named in err


def test_status_of_a_record_never_requested(in_memory: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "never-seen@example.com"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"record_id": "never-seen@example.com", "state": "never requested", "rows_left": 0}


def test_retry_of_a_record_never_requested_exits_2(
    in_memory: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["retry", "never-seen"]) == 2
    err = capsys.readouterr().err
    assert "'never-seen' is never requested, not failed" in err
    assert "only a failed record is retried" in err


def test_list_of_an_empty_ledger(in_memory: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_check_in_memory_passes(in_memory: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 0
    err = capsys.readouterr().err
    assert "ok: database: in memory" in err
    assert "ok: broker: in-process" in err
    assert "ok: resonate: local" in err


def test_check_names_an_unmigrated_database(
    tmp_path: Path, in_memory: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "schema revision is none" in err
    assert "run 'record-deleter db upgrade'" in err


def test_db_upgrade_refuses_the_in_memory_database(
    in_memory: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade"]) == 2
    assert "no schema to migrate" in capsys.readouterr().err


def test_seed_and_db_upgrade_on_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    assert main(["seed", "--records", "5", "--max-rows", "100", "--seed", "7"]) == 0
    assert "seeded 5 records" in capsys.readouterr().out

    engine = builders.engine(url)
    try:
        store = builders.sql_store(engine)
        assert all(store.count_rows(RecordId(f"rec-{i:06d}")) > 0 for i in range(1, 6))
    finally:
        engine.dispose()


# --- the ledger commands after a run ------------------------------------------------------------

REQUESTS, COMPLETIONS, FAILURES = "requests", "done", "failed"
DONE, FAILED, UNTOUCHED = "rec-000001", "rec-000002", "rec-000003"


class RejectingStore(RecordStore):
    """The SQL store, except that the database refuses every delete of one record (a constraint)."""

    def __init__(self, inner: object, rejected: str) -> None:
        self.inner, self.rejected = inner, rejected

    def join_attempt(self, record_id: RecordId, request: RequestRef, request_key: str) -> int:
        return self.inner.join_attempt(record_id, request, request_key)  # type: ignore[attr-defined]

    def delete_batch(self, record_id: RecordId, batch_size: int, attempt: int) -> BatchResult:
        if record_id.value == self.rejected:
            raise DeletionRejected("the database refused the delete (foreign key on orders.record_id)")
        return self.inner.delete_batch(record_id, batch_size, attempt)  # type: ignore[attr-defined]

    def fail_attempt(self, record_id: RecordId, attempt: int, reason: str) -> AttemptTotals:
        return self.inner.fail_attempt(record_id, attempt, reason)  # type: ignore[attr-defined]


@pytest.fixture
def after_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated, seeded SQLite database on which one record was deleted and one failed."""
    url = f"sqlite:///{tmp_path / 'run.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("BROKER_KIND", "memory")
    monkeypatch.setenv("RESONATE_MODE", "local")
    assert main(["db", "upgrade"]) == 0
    assert main(["seed", "--records", "3", "--rows", "25"]) == 0

    engine = builders.engine(url)
    broker = InMemoryBroker()
    broker.create_topic(COMPLETIONS)
    broker.create_topic(FAILURES)
    runtime = builders.runtime(
        builders.resonate("local"),
        RejectingStore(builders.sql_store(engine), FAILED),  # type: ignore[arg-type]
        builders.publisher(broker, COMPLETIONS, FAILURES),
        params=builders.workflow_params(batch_size=10, pause_seconds=0, step_seconds=0),
        retry=builders.step_retry(delay=0.01, max_delay=0.05),
    )
    try:
        for offset, rid in enumerate((DONE, FAILED)):
            message = InboundMessage(REQUESTS, 0, offset, json.dumps(rid).encode(), timestamp=1000 + offset)
            runtime.start(RecordId(rid), message)
            runtime.wait(runtime.request_key(message), 30)
        assert len(broker.messages(COMPLETIONS)) == 1
        assert len(broker.messages(FAILURES)) == 1
    finally:
        runtime.stop()
        engine.dispose()
    return url


def test_status_of_a_deleted_record(after_a_run: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["status", DONE]) == 0
    report = json.loads(capsys.readouterr().out)
    # 25 rows plus the record's own row in `records`, 10 per batch: 3 batches
    assert report["state"] == "done"
    assert report["rows_left"] == 0
    assert report["rows_deleted"] == 26
    assert report["batches"] == 3
    assert report["requests"] == 1
    assert report["reason"] is None
    assert report["finished_at"] is not None
    assert [a["attempt"] for a in report["attempts"]] == [1]


def test_status_of_a_failed_record_says_why(after_a_run: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["status", FAILED]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["state"] == "failed"
    assert report["rows_left"] == 26
    assert report["rows_deleted"] == 0
    assert "DeletionRejected" in report["reason"]
    assert "foreign key" in report["reason"]


def test_status_of_a_seeded_record_never_requested(
    after_a_run: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["status", UNTOUCHED]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"record_id": UNTOUCHED, "state": "never requested", "rows_left": 26}


def test_list_shows_each_records_latest_attempt(after_a_run: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["list", "--format", "json"]) == 0
    listed = {a["record_id"]: a for a in json.loads(capsys.readouterr().out)}
    assert set(listed) == {DONE, FAILED}, "a record never requested has no attempt"
    assert listed[DONE]["state"] == "done"
    assert listed[DONE]["rows_deleted"] == 26
    assert listed[FAILED]["state"] == "failed"

    assert main(["list", "--state", "failed", "--format", "json"]) == 0
    assert [a["record_id"] for a in json.loads(capsys.readouterr().out)] == [FAILED]
    assert main(["list", "--state", "running", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    assert main(["list", "--state", "done"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{DONE}\tattempt 1\tdone\t26 rows\t")

    assert main(["list", "--limit", "1", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_retry_of_a_deleted_record_exits_2(after_a_run: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["retry", DONE]) == 2
    assert f"record {DONE!r} is done, not failed" in capsys.readouterr().err


def test_demo_passes_and_prints_completion_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's own checks: rows gone, every request answered once (the duplicate too), one
    attempt for the duplicated id, poison dead-lettered, fast before slow."""
    code = main(["demo", "--db", str(tmp_path / "demo.db")])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out
    assert "demo passed" in out
    assert out.count("[ok]") == 6
    assert "FAILED" not in out
    # progress counts rows (the big record is most of the work), ending at all of them
    seeded = int(re.search(r"seeding \d+ records, ([\d,]+) rows", out)[1].replace(",", ""))  # type: ignore[index]
    progress = re.findall(r"rows deleted: (\d+)/(\d+)", captured.err)
    assert progress, captured.err
    done, total = map(int, progress[-1])
    assert done == total >= seeded


@pytest.mark.parametrize("command", [["worker"], ["setup-topics"], ["produce", "-n", "1"]])
def test_the_in_process_broker_is_refused_outside_the_demo(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_KIND", "memory")
    monkeypatch.setenv("DATABASE_URL", "memory")
    assert main(command) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "BROKER_KIND=memory" in line
    assert "only 'demo'" in line


def test_a_config_path_that_is_a_directory_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "memory")
    assert main(["--config", str(tmp_path), "list"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"config file {tmp_path} is a directory" in line


def test_db_upgrade_on_an_unreachable_database_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://app:s3cr3t-pw@127.0.0.1:1/app")
    assert main(["db", "upgrade"]) == 3
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        "record-deleter: unreachable: database postgresql+psycopg://app:***@127.0.0.1:1/app: "
    )
    assert "s3cr3t-pw" not in line


def test_dashboard_on_a_port_in_use_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    import socket

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("DASHBOARD_PORT", str(taken.getsockname()[1]))
        assert main(["dashboard"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # nothing else: no broker, no runtime
    assert line.startswith("record-deleter: cannot serve the dashboard on 127.0.0.1:")
    assert "Address already in use" in line
    monkeypatch.setenv("DATABASE_URL", "memory")
    assert main(["dashboard"]) == 2
    assert "DATABASE_URL=memory" in capsys.readouterr().err
