"""The audit chain's tail in one index probe: `deletion_audit (record_id, id)`.

Every batch reads the newest audit row of its record (the hash the next row links to). With an
index on `record_id` alone the database reads all of the record's rows and sorts them, once per
batch: quadratic in a record's batches (10,000 batches of a 10-million-row record read 50 million
rows). The composite index answers it from its end; it also serves every query the single-column
index did, which it replaces.

Revision ID: rd0004
Revises: rd0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "rd0004"
down_revision = "rd0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deletion_audit_record_id_id", "deletion_audit", ["record_id", "id"])
    op.drop_index("ix_deletion_audit_record_id", table_name="deletion_audit")


def downgrade() -> None:
    op.create_index("ix_deletion_audit_record_id", "deletion_audit", ["record_id"])
    op.drop_index("ix_deletion_audit_record_id_id", table_name="deletion_audit")
