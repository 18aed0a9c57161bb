"""SqlRecordStore: real batched DELETEs through SQLAlchemy Core, one short transaction per batch."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

from sqlalchemy import (
    Engine,
    Executable,
    Integer,
    bindparam,
    column,
    delete,
    exists,
    func,
    insert,
    inspect,
    select,
    table,
)
from sqlalchemy.exc import DBAPIError, NoSuchTableError, OperationalError, SQLAlchemyError

from ..domain.errors import DeletionPlanInvalid, RecordStoreUnavailable
from ..domain.model import BatchResult, RecordId
from ..domain.ports import RecordInventory, RecordStore
from .sql_schema import deletion_audit, record_rows, records


@dataclass(frozen=True, slots=True)
class PlanStep:
    """One table to purge: rows whose `key_column` equals the record id, addressed by `pk_column`."""

    table: str
    key_column: str
    pk_column: str = "id"


@dataclass(frozen=True, slots=True)
class DeletionPlan:
    """Tables to purge for a record, children before parents."""

    steps: tuple[PlanStep, ...]

    @classmethod
    def parse(cls, text: str) -> DeletionPlan:
        """Parse 'table:key_column[:pk_column],...' (children first)."""
        steps = []
        for raw in text.split(","):
            parts = [p.strip() for p in raw.strip().split(":")]
            if len(parts) not in (2, 3) or not all(p.isidentifier() for p in parts):
                raise ValueError(
                    f"deletion plan entry {raw.strip()!r} must be 'table:key_column' or "
                    "'table:key_column:pk_column' (identifiers only), entries separated by ','"
                )
            steps.append(PlanStep(*parts))
        if not steps:
            raise ValueError("deletion plan is empty; name at least one 'table:key_column'")
        return cls(tuple(steps))

    def __str__(self) -> str:
        return ",".join(f"{s.table}:{s.key_column}:{s.pk_column}" for s in self.steps)


class SqlRecordStore(RecordStore, RecordInventory):
    """Deletes a record's rows table by table (plan order), at most `batch_size` rows per call.

    Each call is one transaction: the rows and an audit row recording how many went, so the
    audit table counts executed batches exactly (a rolled-back batch leaves no audit row).
    """

    def __init__(self, engine: Engine, plan: DeletionPlan, *, audit: bool = True) -> None:
        self._engine = engine
        self._plan = plan
        self._audit = audit
        self._validated = False
        self._lock = threading.Lock()

    def delete_batch(self, record_id: RecordId, batch_size: int) -> BatchResult:
        self._validate_plan()
        key = record_id.value
        budget = batch_size
        more = False
        last = len(self._statements) - 1
        try:
            with self._engine.begin() as conn:
                for i, (delete_rows, rows_left) in enumerate(self._statements):
                    result = conn.execute(delete_rows, {"key": key, "n": budget})
                    budget -= max(result.rowcount, 0)
                    if budget == 0 and i < last:
                        # A full batch before the plan's last table: that table's rows (the
                        # parent) are still there, so there is more. No probe needed.
                        more = True
                        break
                    if conn.execute(rows_left, {"key": key}).scalar():
                        # Rows remain in this table: the batch is full, or (fewer deleted than
                        # asked) a concurrent batch holds them (PostgreSQL skips rows it deleted).
                        # Stop here, so a parent is never purged before its children.
                        more = True
                        break
                deleted = batch_size - budget
                if self._audit:
                    conn.execute(self._audit_insert, {"record_id": key, "rows_deleted": deleted})
        except (OperationalError, DBAPIError) as exc:
            if exc.connection_invalidated or isinstance(exc, OperationalError):
                raise RecordStoreUnavailable(f"database unavailable: {exc.orig}") from exc
            raise RecordStoreUnavailable(f"batch failed: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise RecordStoreUnavailable(f"batch failed: {exc}") from exc
        return BatchResult(deleted=deleted, more=more)

    @functools.cached_property
    def _statements(self) -> tuple[tuple[Executable, Executable], ...]:
        """Per plan table, built once: the batched DELETE and the "rows left?" probe (bound parameters)."""
        out = []
        for step in self._plan.steps:
            t = table(step.table, column(step.pk_column), column(step.key_column))
            victims = (
                select(t.c[step.pk_column])
                .where(t.c[step.key_column] == bindparam("key"))
                .limit(bindparam("n", type_=Integer))
            )
            out.append(
                (
                    delete(t).where(t.c[step.pk_column].in_(victims.scalar_subquery())),
                    select(exists().where(t.c[step.key_column] == bindparam("key"))),
                )
            )
        return tuple(out)

    @functools.cached_property
    def _audit_insert(self) -> Executable:
        return insert(deletion_audit).values(
            record_id=bindparam("record_id"), rows_deleted=bindparam("rows_deleted")
        )

    def _validate_plan(self) -> None:
        if self._validated:
            return
        with self._lock:
            if self._validated:
                return
            try:
                inspector = inspect(self._engine)
                for step in self._plan.steps:
                    if not inspector.has_table(step.table):
                        raise DeletionPlanInvalid(
                            f"deletion plan names table {step.table!r}, which does not exist; "
                            "run 'record-deleter db upgrade' or fix DATABASE_DELETION_PLAN"
                        )
                    names = {c["name"] for c in inspector.get_columns(step.table)}
                    for col in (step.key_column, step.pk_column):
                        if col not in names:
                            raise DeletionPlanInvalid(
                                f"deletion plan names column {step.table}.{col}, which does not exist "
                                f"(columns: {', '.join(sorted(names))})"
                            )
            except NoSuchTableError as exc:
                raise DeletionPlanInvalid(f"deletion plan names a missing table: {exc}") from exc
            except (OperationalError, DBAPIError) as exc:
                raise RecordStoreUnavailable(f"database unavailable: {exc.orig}") from exc
            self._validated = True

    def add_record(self, record_id: RecordId, rows: int) -> None:
        chunk = 5000
        with self._engine.begin() as conn:
            conn.execute(insert(records).values(id=record_id.value))
            for start in range(0, rows, chunk):
                n = min(chunk, rows - start)
                conn.execute(
                    insert(record_rows),
                    [{"record_id": record_id.value, "payload": f"row {start + i}"} for i in range(n)],
                )

    def count_rows(self, record_id: RecordId) -> int:
        total = 0
        with self._engine.connect() as conn:
            for step in self._plan.steps:
                t = table(step.table, column(step.key_column))
                total += conn.execute(
                    select(func.count()).select_from(t).where(t.c[step.key_column] == record_id.value)
                ).scalar_one()
        return total

    def batches_done(self, record_id: RecordId) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(deletion_audit)
                    .where(deletion_audit.c.record_id == record_id.value)
                ).scalar_one()
            )
