"""Table handles for the project's own schema. The schema itself is created only by Alembic."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text, func

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

records = Table(
    "records",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
)

record_rows = Table(
    "record_rows",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("record_id", String(128), nullable=False, index=True),
    Column("payload", Text, nullable=False),
)

deletion_audit = Table(
    "deletion_audit",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("record_id", String(128), nullable=False, index=True),
    Column("rows_deleted", Integer, nullable=False),
    Column("deleted_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
)
