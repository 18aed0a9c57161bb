"""Driver errors → the port's errors, with messages safe to publish.

A failure reason travels to a Kafka topic and into the evidence of a deletion, so it must not
carry row values: PostgreSQL's DETAIL lines ("Key (id)=(ada@example.com) ...") and SQL parameters
are dropped; what remains is the error's class, its SQLSTATE and the first line of the driver's
message (which names tables and constraints, not values).
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from ..domain.errors import DeletionPlanInvalid, DeletionRejected, DomainError, RecordStoreUnavailable

# SQLSTATE classes no retry can fix: 42 (the plan names something missing or mistyped for this
# schema), 22 (the record id does not fit the key column, e.g. text for an integer key), 23
# (a constraint). Everything else (08 connection, 40 rollback, 53 resources, 55 lock timeout,
# 57 statement timeout or shutdown, ...) is transient: the record waits, it never fails.
_SQLITE_PLAN_MARKERS = ("no such table", "no such column")


def translate(exc: SQLAlchemyError, doing: str) -> DomainError:
    """The port-level error for `exc`, raised while `doing` (e.g. 'deleting from record_rows')."""
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    first_line = (str(orig).strip().splitlines() or [""])[0][:200]
    kind = type(orig).__name__ + (f", SQLSTATE {sqlstate}" if sqlstate else "")
    if isinstance(exc, IntegrityError) or (sqlstate or "").startswith(("22", "23")):
        return DeletionRejected(
            f"the database refused {doing} ({kind}): {first_line}; check that DATABASE_DELETION_PLAN "
            "lists child tables before their parents"
        )
    if (sqlstate or "").startswith("42") or any(m in first_line for m in _SQLITE_PLAN_MARKERS):
        return DeletionPlanInvalid(f"{doing} failed ({kind}): {first_line}; run 'record-deleter check'")
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return RecordStoreUnavailable(f"database connection lost while {doing} ({kind})")
    return RecordStoreUnavailable(f"{doing} failed ({kind}): {first_line}")
