"""Table handles. Two schemas, kept apart on purpose:

* `metadata` — the project's own tables (`deletion_audit`). Created only by the Alembic
  migrations (`record-deleter db upgrade`), which keep their own version table so they can live
  in an application's database next to its own Alembic history.
* `demo_metadata` — `records` and `record_rows`, a stand-in for *the application's* data that
  the default deletion plan purges. Created only by the commands that need sample data (`demo`,
  `seed`) and by tests, never by `db upgrade`: in production these are the user's tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The Alembic version table of this project's migrations (not Alembic's default
# `alembic_version`, which the host application's own migrations use).
VERSION_TABLE = "record_deleter_alembic_version"

metadata = MetaData(naming_convention=NAMING_CONVENTION)

deletion_audit = Table(
    "deletion_audit",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("record_id", String(128), nullable=False),
    Column("rows_deleted", Integer, nullable=False),
    Column("deleted_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("attempt", Integer, nullable=False, server_default="1"),
    # Evidence (rd0003): rows per plan table in this batch (JSON), who committed it, and a hash over
    # the row chained to the previous row of the same record. NULL on rows written before rd0003.
    Column("tables", Text, nullable=True),
    Column("worker", String(200), nullable=True),
    Column("chain_hash", String(64), nullable=True),
    Index("ix_deletion_audit_deleted_at", "deleted_at"),
    # the chain's tail (a record's newest row) in one probe, and every by-record read (rd0004)
    Index("ix_deletion_audit_record_id_id", "record_id", "id"),
)

# One row per deletion attempt of a record; at most one of a record's attempts is `running`.
deletion_attempts = Table(
    "deletion_attempts",
    metadata,
    Column("record_id", String(128), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("state", String(16), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("rows_deleted", BigInteger, nullable=True),
    Column("batches", Integer, nullable=True),
    Column("reason", Text, nullable=True),
    Column("opened_by", String(600), nullable=False),  # the request whose workflow runs this attempt
    # Evidence (rd0003): the deletion plan it ran, the record's rows per plan table when it closed
    # (JSON, counted in the closing transaction) and the chain hash of its last batch.
    Column("plan", Text, nullable=True),
    Column("final_counts", Text, nullable=True),
    Column("audit_head", String(64), nullable=True),
    Index("ix_deletion_attempts_finished_at", "finished_at"),
    # The invariant itself: two requests racing to open a record's next attempt cannot both win.
    Index(
        "ix_deletion_attempts_one_running",
        "record_id",
        unique=True,
        sqlite_where=text("state = 'running'"),
        postgresql_where=text("state = 'running'"),
    ),
)

# One row per distinct request message, with the attempt that answers it.
deletion_requests = Table(
    "deletion_requests",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_key", String(600), nullable=False),
    Column("record_id", String(128), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("topic", String(249), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("message_timestamp", BigInteger, nullable=True),
    Column("headers", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Index("ix_deletion_requests_request_key", "request_key", unique=True),
)

# One row per answer message the broker confirmed (rd0003); a re-published answer adds a row.
deletion_answers = Table(
    "deletion_answers",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_key", String(600), nullable=False, index=True),
    Column("record_id", String(128), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),  # deleted | failed
    Column("topic", String(249), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("worker", String(200), nullable=True),
    Column("published_at", DateTime(timezone=True), server_default=func.now(), nullable=False, index=True),
)

demo_metadata = MetaData(naming_convention=NAMING_CONVENTION)

records = Table(
    "records",
    demo_metadata,
    Column("id", String(128), primary_key=True),
    Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
)

record_rows = Table(
    "record_rows",
    demo_metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    # Without this index every batch is a full scan (tens of thousands of rows/s instead of ~1M).
    Column("record_id", String(128), nullable=False, index=True),
    Column("payload", Text, nullable=False),
)


# The deletion plan that purges the demo tables, children first (DATABASE_DELETION_PLAN's default).
DEMO_DELETION_PLAN = "record_rows:record_id,records:id"


def create_demo_tables(engine: Engine) -> None:
    """Create the sample application's tables if missing (demo, seed, tests)."""
    demo_metadata.create_all(engine, checkfirst=True)
