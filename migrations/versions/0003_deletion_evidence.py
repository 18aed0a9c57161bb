"""Deletion evidence: what each batch deleted where and by whom, chained; the answers published.

* `deletion_audit` gains `tables` (JSON: rows per plan table in this batch), `worker` (who
  committed it) and `chain_hash` (a hash over the row and the previous row's hash of the same
  record, so an edited or removed row breaks the chain). Rows written before this revision have
  none of them and are reported as "not chained".
* `deletion_attempts` gains `plan` (the deletion plan the attempt ran), `final_counts` (JSON: the
  record's rows in every plan table when the attempt closed, counted in the closing transaction)
  and `audit_head` (the last batch's chain hash, so a removed last row is detected too).
* `deletion_answers`: one row per answer message the broker confirmed (a re-published answer
  adds a row), with its coordinates.
* Indexes on the times the dashboard and the retention pruning read by.

Revision ID: rd0003
Revises: rd0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "rd0003"
down_revision = "rd0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deletion_audit") as batch:
        batch.add_column(sa.Column("tables", sa.Text(), nullable=True))
        batch.add_column(sa.Column("worker", sa.String(200), nullable=True))
        batch.add_column(sa.Column("chain_hash", sa.String(64), nullable=True))
    op.create_index("ix_deletion_audit_deleted_at", "deletion_audit", ["deleted_at"])
    with op.batch_alter_table("deletion_attempts") as batch:
        batch.add_column(sa.Column("plan", sa.Text(), nullable=True))
        batch.add_column(sa.Column("final_counts", sa.Text(), nullable=True))
        batch.add_column(sa.Column("audit_head", sa.String(64), nullable=True))
    op.create_index("ix_deletion_attempts_finished_at", "deletion_attempts", ["finished_at"])
    op.create_table(
        "deletion_answers",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("request_key", sa.String(600), nullable=False),
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deletion_answers"),
    )
    op.create_index("ix_deletion_answers_record_id", "deletion_answers", ["record_id"])
    op.create_index("ix_deletion_answers_request_key", "deletion_answers", ["request_key"])
    op.create_index("ix_deletion_answers_published_at", "deletion_answers", ["published_at"])


def downgrade() -> None:
    op.drop_index("ix_deletion_answers_published_at", table_name="deletion_answers")
    op.drop_index("ix_deletion_answers_request_key", table_name="deletion_answers")
    op.drop_index("ix_deletion_answers_record_id", table_name="deletion_answers")
    op.drop_table("deletion_answers")
    op.drop_index("ix_deletion_attempts_finished_at", table_name="deletion_attempts")
    with op.batch_alter_table("deletion_attempts") as batch:
        batch.drop_column("audit_head")
        batch.drop_column("final_counts")
        batch.drop_column("plan")
    op.drop_index("ix_deletion_audit_deleted_at", table_name="deletion_audit")
    with op.batch_alter_table("deletion_audit") as batch:
        batch.drop_column("chain_hash")
        batch.drop_column("worker")
        batch.drop_column("tables")
