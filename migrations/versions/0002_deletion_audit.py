"""deletion_audit: one row per executed delete batch (compliance trail; counts re-executions).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
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
