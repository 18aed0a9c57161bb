"""The CLI as a user meets it: help for every subcommand, argument errors, the demo."""

from __future__ import annotations

import subprocess
import sys

import pytest

from record_deleter.entrypoints.cli import main
from tests import builders

pytestmark = pytest.mark.unit

SUBCOMMANDS = ["worker", "produce", "setup-topics", "seed", "demo", "status", "db", "db upgrade"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command.split(), "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: record-deleter")


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "record_deleter.entrypoints.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    for command in ("worker", "produce", "setup-topics", "seed", "demo", "status", "db"):
        assert command in result.stdout


def test_produce_needs_a_positive_count(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_KIND", "memory")
    assert main(["produce", "-n", "0"]) == 2
    assert "-n = 0: must be at least 1" in capsys.readouterr().err


def test_status_rejects_an_invalid_record_id(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESONATE_MODE", "local")
    monkeypatch.setenv("DATABASE_URL", "memory")
    assert main(["status", "a/../b"]) == 1
    assert "only letters, digits" in capsys.readouterr().err


def test_status_of_unknown_record_in_memory(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESONATE_MODE", "local")
    monkeypatch.setenv("DATABASE_URL", "memory")
    assert main(["status", "never-seen"]) == 0
    out = capsys.readouterr().out
    assert '"workflow": "unknown"' in out
    assert '"rows_left": 0' in out


def test_seed_and_db_upgrade_on_sqlite(tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    assert main(["seed", "--records", "5", "--max-rows", "100", "--seed", "7"]) == 0
    assert "seeded 5 records" in capsys.readouterr().out
    from record_deleter.domain.model import RecordId

    engine = builders.engine(url)
    store = builders.sql_store(engine)
    assert all(store.count_rows(RecordId(f"rec-{i:06d}")) > 0 for i in range(1, 6))
    engine.dispose()


def test_demo_passes_and_prints_completion_order(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's own checks: rows gone, duplicate collapsed, poison dead-lettered, fast before slow."""
    code = main(["demo", "--db", str(tmp_path / "demo.db")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "demo passed" in out
    assert out.count("[ok]") == 6
    assert "FAILED" not in out
