"""records and record_rows: the demo schema the default deletion plan purges.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_records"),
    )
    op.create_table(
        "record_rows",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_record_rows"),
    )
    # Without this index every batch is a full scan (tens of thousands of rows/s instead of ~1M).
    op.create_index("ix_record_rows_record_id", "record_rows", ["record_id"])


def downgrade() -> None:
    op.drop_index("ix_record_rows_record_id", table_name="record_rows")
    op.drop_table("record_rows")
    op.drop_table("records")
