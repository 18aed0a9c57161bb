"""Alembic stairway: every revision upgrades, downgrades and upgrades again, on each database.

Catches a downgrade that forgets an object (the second upgrade then fails) and a migration
that only works on one dialect.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import Script, ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from record_deleter.adapters.sql_migrations import (
    alembic_config,
    current_head,
    downgrade,
    prepare_demo_database,
    upgrade,
)
from record_deleter.adapters.sql_schema import VERSION_TABLE
from tests.conftest import service_endpoint

# No module-level `unit` mark: the PostgreSQL params are `integration` and must not be selected by `-m unit`.
PROJECT_TABLES = {"deletion_audit", "deletion_attempts", "deletion_requests", "deletion_answers"}
DEMO_TABLES = {"records", "record_rows"}


def revisions() -> list[Script]:
    """Every revision, oldest first."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return list(reversed(list(scripts.walk_revisions("base", "heads"))))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'stairway.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database per test, so the stairway never touches the shared one."""
    server = make_url(service_endpoint("DATABASE_URL", "PostgreSQL"))
    name = f"stairway_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.unit),
        pytest.param("postgres", marks=pytest.mark.integration),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def tables_and_indexes(url: str) -> tuple[set[str], set[str]]:
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        tables = set(inspector.get_table_names())
        indexes = {
            ix["name"] for t in tables & PROJECT_TABLES for ix in inspector.get_indexes(t) if ix["name"]
        }
        return tables, indexes
    finally:
        engine.dispose()


@pytest.mark.unit
def test_the_revision_history_is_linear_and_ends_at_head() -> None:
    scripts = revisions()
    assert scripts, "no migrations found"
    assert scripts[0].down_revision is None
    for older, newer in itertools.pairwise(scripts):
        assert newer.down_revision == older.revision
    assert scripts[-1].revision == current_head()


def test_stairway(database_url: str) -> None:
    for script in revisions():
        upgrade(database_url, script.revision)
        downgrade(database_url, "-1")
        upgrade(database_url, script.revision)

    tables, indexes = tables_and_indexes(database_url)
    assert tables >= PROJECT_TABLES
    assert not tables & DEMO_TABLES, "db upgrade must not create the demo schema in a user's database"
    assert "ix_deletion_audit_record_id_id" in indexes
    assert VERSION_TABLE in tables
    assert "alembic_version" not in tables, "Alembic's default version table belongs to the application"


def test_every_batch_reads_its_chain_tail_in_one_index_probe(database_url: str) -> None:
    """A batch reads its record's newest audit row (the hash it links to). The plan must walk the
    (record_id, id) index from its end, not read and sort all of a big record's rows: that is
    once per batch, quadratic in the record's batches."""
    from record_deleter.adapters.sql_audit import chain_tail_query

    upgrade(database_url, "head")
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            # the record's batches, then many more of other records (a busy audit table)
            rows = [{"record_id": "big", "rows_deleted": 1} for _ in range(3000)]
            rows += [{"record_id": f"other-{i % 500}", "rows_deleted": 1} for i in range(30_000)]
            conn.execute(
                text(
                    "INSERT INTO deletion_audit (record_id, rows_deleted) VALUES (:record_id, :rows_deleted)"
                ),
                rows,
            )
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
            query = chain_tail_query("big").compile(conn, compile_kwargs={"literal_binds": True})
            explain = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
            plan = "\n".join(" ".join(map(str, r)) for r in conn.execute(text(explain + str(query))))
    finally:
        engine.dispose()
    assert "ix_deletion_audit_record_id_id" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # SQLite sorting the record's rows
    assert "Sort" not in plan, plan  # PostgreSQL sorting them


def test_the_demo_schema_has_the_index_every_batch_needs(database_url: str) -> None:
    prepare_demo_database(database_url)
    engine = create_engine(database_url)
    try:
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("record_rows")}
    finally:
        engine.dispose()
    assert "ix_record_rows_record_id" in indexes, "without it every batch is a full scan"


def test_db_upgrade_leaves_an_applications_own_alembic_history_and_tables_intact(database_url: str) -> None:
    """The worker's migrations run in the application's database, beside its own Alembic tree."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('app_0042')"))
            conn.execute(text("CREATE TABLE customers (id INTEGER PRIMARY KEY, email VARCHAR(100))"))
            conn.execute(text("INSERT INTO customers VALUES (1, 'ada@example.com')"))

        upgrade(database_url)
        upgrade(database_url)  # idempotent

        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
                "app_0042"
            ]
            assert conn.execute(text("SELECT email FROM customers")).scalars().all() == ["ada@example.com"]
            ours = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
        assert ours == [current_head()]
        tables = set(inspect(engine).get_table_names())
        assert tables == {"alembic_version", "customers", VERSION_TABLE, *PROJECT_TABLES}

        downgrade(database_url, "base")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
                "app_0042"
            ]
        assert "customers" in set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_every_project_table(database_url: str) -> None:
    upgrade(database_url)
    downgrade(database_url, "base")

    tables, _ = tables_and_indexes(database_url)
    assert not tables & PROJECT_TABLES

    upgrade(database_url)
    tables, _ = tables_and_indexes(database_url)
    assert tables >= PROJECT_TABLES


def test_the_schema_at_head_matches_the_table_handles(database_url: str) -> None:
    """One source of truth: what Alembic creates is what the adapters' table handles describe."""
    from record_deleter.adapters.sql_schema import metadata

    upgrade(database_url)
    engine = create_engine(database_url)
    try:
        inspector = inspect(engine)
        for table in metadata.sorted_tables:
            columns = {c["name"] for c in inspector.get_columns(table.name)}
            assert columns == {c.name for c in table.columns}, table.name
            indexes = {ix["name"] for ix in inspector.get_indexes(table.name)}
            assert indexes == {ix.name for ix in table.indexes}, table.name
    finally:
        engine.dispose()
