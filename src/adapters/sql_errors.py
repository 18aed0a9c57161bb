"""Driver errors → the port's errors, with messages safe to publish.

A failure reason travels to a Kafka topic, into the ledger (`status`, `list`) and into the logs,
so it must not carry row values. Not only PostgreSQL's DETAIL lines ("Key (id)=(ada@example.com)
..."): a message's first line can quote them too (`invalid input syntax for type integer:
"ada@example.com"`, a trigger's `RAISE EXCEPTION 'row % of % is under legal hold'`, a SQLite
trigger's RAISE text). So a permanent error says only what we were doing (naming the table, from
the deletion plan), the error's class and SQLSTATE, and words of our own for that class; the
driver's text is never copied into it. A transient error (logged, never published: the step
retries) keeps the first line of the driver's message, for the operator fixing the outage.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from ..domain.errors import DeletionPlanInvalid, DeletionRejected, DomainError, RecordStoreUnavailable

# SQLSTATE classes no retry can fix: 42 (the plan names something missing or mistyped for this
# schema), 22 (the record id does not fit the key column, e.g. text for an integer key), 23
# (a constraint). Everything else (08 connection, 40 rollback, 53 resources, 55 lock timeout,
# 57 statement timeout or shutdown, ...) is transient: the record waits, it never fails.
_SQLITE_PLAN_MARKERS = ("no such table", "no such column")
_REJECTED_WHY = {
    "22": "a value does not fit its column (data exception): does the record id fit the key column's type?",
    "23": "a constraint or trigger refused it: check that DATABASE_DELETION_PLAN lists child tables "
    "before their parents, and the application's rules for this record",
}


def translate(exc: SQLAlchemyError, doing: str) -> DomainError:
    """The port-level error for `exc`, raised while `doing` (e.g. 'deleting from record_rows')."""
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    first_line = (str(orig).strip().splitlines() or [""])[0][:200]
    kind = type(orig).__name__ + (f", SQLSTATE {sqlstate}" if sqlstate else "")
    if isinstance(exc, IntegrityError) or (sqlstate or "").startswith(("22", "23")):
        why = _REJECTED_WHY["22" if (sqlstate or "").startswith("22") else "23"]
        return DeletionRejected(f"the database refused {doing} ({kind}): {why}")
    plan_marker = next((m for m in _SQLITE_PLAN_MARKERS if m in first_line), None)
    if (sqlstate or "").startswith("42") or plan_marker:
        what = plan_marker or "a table, column or type the plan names does not fit the schema"
        return DeletionPlanInvalid(f"{doing} failed ({kind}): {what}; run 'record-deleter check'")
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return RecordStoreUnavailable(f"database connection lost while {doing} ({kind})")
    return RecordStoreUnavailable(f"{doing} failed ({kind}): {first_line}")
