"""Databases for tests and benchmarks: the project's schema plus the sample tables, records seeded
with plain SQL (`records` row + `record_rows`), and a scratch database per run."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from record_deleter.adapters.sql_migrations import prepare_demo_database

from .endpoints import unique


def engine(url: str, pool_size: int = 2) -> Engine:
    """A plain engine for the harness's own queries (not the worker's tuned one)."""
    if url.startswith("sqlite"):
        return create_engine(url, connect_args={"timeout": 30})
    return create_engine(url, pool_size=pool_size, pool_pre_ping=True)


def prepare(url: str) -> None:
    """`record-deleter db upgrade` plus the sample application's tables."""
    prepare_demo_database(url)


def seed(db: Engine, records: dict[str, int], *, vacuum: bool = False) -> None:
    """One `records` row and that many `record_rows` per record id (`vacuum`: then VACUUM ANALYZE
    on PostgreSQL, so a measurement starts from the same table state whatever ran before it)."""
    rows_of = (
        "SELECT :id, 'row ' || x FROM generate_series(1, :n) x"
        if db.dialect.name == "postgresql"
        else "SELECT :id, 'row ' || x FROM (WITH RECURSIVE c(x) AS "
        "(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) SELECT x FROM c)"
    )
    with db.begin() as conn:
        for record_id, rows in records.items():
            conn.execute(text("INSERT INTO records (id) VALUES (:id)"), {"id": record_id})
            if rows:
                conn.execute(
                    text(f"INSERT INTO record_rows (record_id, payload) {rows_of}"),
                    {"id": record_id, "n": rows},
                )
    if vacuum and db.dialect.name == "postgresql":
        with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE record_rows"))


def rows_of(db: Engine, record_id: str) -> int:
    """`record_rows` plus `records` rows of one record."""
    with db.connect() as conn:
        a = conn.execute(text("select count(*) from record_rows where record_id = :i"), {"i": record_id})
        b = conn.execute(text("select count(*) from records where id = :i"), {"i": record_id})
        return int(a.scalar_one()) + int(b.scalar_one())


def rows_left(db: Engine, prefix: str) -> int:
    """`record_rows` plus `records` rows of the records whose id starts with `prefix`."""
    with db.connect() as conn:
        a = conn.execute(
            text("select count(*) from record_rows where record_id like :p"), {"p": prefix + "%"}
        )
        b = conn.execute(text("select count(*) from records where id like :p"), {"p": prefix + "%"})
        return int(a.scalar_one()) + int(b.scalar_one())


def audit(db: Engine, prefix: str) -> dict[str, int]:
    """Executed delete batches per record id (rows in deletion_audit) of ids starting with `prefix`."""
    with db.connect() as conn:
        rows = conn.execute(
            text("select record_id, count(*) from deletion_audit where record_id like :p group by record_id"),
            {"p": prefix + "%"},
        ).all()
    return {str(r[0]): int(r[1]) for r in rows}


def attempts(db: Engine, prefix: str) -> dict[str, int]:
    """Deletion attempts per record id (rows in deletion_attempts) of ids starting with `prefix`."""
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "select record_id, count(*) from deletion_attempts where record_id like :p group by record_id"
            ),
            {"p": prefix + "%"},
        ).all()
    return {str(r[0]): int(r[1]) for r in rows}


@contextlib.contextmanager
def scratch_database(kind: str, postgres: str | None = None) -> Iterator[str]:
    """A prepared, empty database for one run: a SQLite file in a temp dir, or a new database on the
    PostgreSQL at `postgres` (dropped after). Yields its URL."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="rd-db-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'records.db'}"
            prepare(url)
            yield url
        return
    if kind != "postgres" or not postgres:
        raise ValueError(f"no {kind} database to make (postgres needs DATABASE_URL)")
    with empty_database(postgres, "rd_scratch") as url:
        prepare(url)
        yield url


@contextlib.contextmanager
def empty_database(postgres: str, prefix: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL at `postgres`, dropped after. Yields its URL."""
    name = unique(prefix).replace("-", "_")
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        # an autovacuum worker can hold the database right after a big DELETE: retry a while
        for attempt in range(10):
            try:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except SQLAlchemyError:
                if attempt == 9:
                    raise
                time.sleep(1)
        admin.dispose()


def superuser_url() -> str | None:
    """The PostgreSQL superuser over the unix socket of the cluster `scripts/services.sh`
    provisioned (trust auth), for what the application's role may not do (CREATE ROLE); None
    when the PostgreSQL is not one it provisioned."""
    from .endpoints import services_dir

    state = services_dir() / "postgres.state"
    if not state.is_file():
        return None
    values = dict(line.split("=", 1) for line in state.read_text().splitlines() if "=" in line)
    if values.get("POSTGRES_EXTERNAL") != "0" or not values.get("PG_TMP") or not values.get("PG_PORT"):
        return None
    return f"postgresql+psycopg://postgres@/postgres?host={values['PG_TMP']}&port={values['PG_PORT']}"
