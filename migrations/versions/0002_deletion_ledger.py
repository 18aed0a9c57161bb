"""The deletion ledger: attempts and requests, and the attempt of every audited batch.

Every distinct request message gets one answer from the attempt it joined; at most one attempt
per record runs at a time, and a record deleted or failed earlier gets a new attempt.

Revision ID: rd0002
Revises: rd0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "rd0002"
down_revision = "rd0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deletion_audit") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
    op.create_table(
        "deletion_attempts",
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows_deleted", sa.BigInteger(), nullable=True),
        sa.Column("batches", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("opened_by", sa.String(600), nullable=False),
        sa.PrimaryKeyConstraint("record_id", "attempt", name="pk_deletion_attempts"),
    )
    op.create_index("ix_deletion_attempts_state", "deletion_attempts", ["state"])
    # At most one running attempt per record: the invariant itself, not just the code's intent.
    op.create_index(
        "ix_deletion_attempts_one_running",
        "deletion_attempts",
        ["record_id"],
        unique=True,
        sqlite_where=sa.text("state = 'running'"),
        postgresql_where=sa.text("state = 'running'"),
    )
    op.create_table(
        "deletion_requests",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("request_key", sa.String(600), nullable=False),
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("message_timestamp", sa.BigInteger(), nullable=True),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deletion_requests"),
    )
    op.create_index("ix_deletion_requests_request_key", "deletion_requests", ["request_key"], unique=True)
    op.create_index("ix_deletion_requests_record_id", "deletion_requests", ["record_id"])


def downgrade() -> None:
    op.drop_index("ix_deletion_requests_request_key", table_name="deletion_requests")
    op.drop_index("ix_deletion_requests_record_id", table_name="deletion_requests")
    op.drop_table("deletion_requests")
    op.drop_index("ix_deletion_attempts_one_running", table_name="deletion_attempts")
    op.drop_index("ix_deletion_attempts_state", table_name="deletion_attempts")
    op.drop_table("deletion_attempts")
    with op.batch_alter_table("deletion_audit") as batch:
        batch.drop_column("attempt")
