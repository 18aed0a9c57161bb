"""deletion_audit: one row per executed delete batch (compliance trail; counts re-executions).

The project's migrations create only the project's own tables; the sample application's
`records` / `record_rows` are not part of them (see `record_deleter.adapters.sql_schema`).

Revision ID: rd0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "rd0001"
down_revision = None
branch_labels = ("record_deleter",)
depends_on = None


def upgrade() -> None:
    # A database migrated by record-deleter 0.1.0 (which kept its version in Alembic's default
    # `alembic_version` table) already has this table: adopt it instead of failing.
    if sa.inspect(op.get_bind()).has_table("deletion_audit"):
        return
    op.create_table(
        "deletion_audit",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("rows_deleted", sa.Integer(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deletion_audit"),
    )
    op.create_index("ix_deletion_audit_record_id", "deletion_audit", ["record_id"])


def downgrade() -> None:
    op.drop_index("ix_deletion_audit_record_id", table_name="deletion_audit")
    op.drop_table("deletion_audit")
