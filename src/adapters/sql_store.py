"""SqlRecordStore: real batched DELETEs through SQLAlchemy Core, one short transaction per batch."""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    Connection,
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
from sqlalchemy.exc import IntegrityError, NoSuchTableError, SQLAlchemyError

from ..domain.errors import DeletionPlanInvalid, InvalidRecordId, RecordStoreUnavailable
from ..domain.evidence import Delivery, PruneCounts, RecordHistory
from ..domain.model import (
    Answer,
    AttemptRecord,
    AttemptTotals,
    BatchResult,
    JoinedAttempt,
    RecordId,
    RequestRef,
)
from ..domain.ports import DeletionLedger, EvidenceArchive, RecordInventory, RecordStore
from . import sql_audit, sql_evidence, sql_ledger, sql_retention
from .evidence_chain import AuditIdentity, tables_json
from .sql_errors import translate
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


# A hashed ledger id as a log line (16 hex digits) or the ledger (64) shows it.
_HASH_FORMS = re.compile(r"[0-9a-f]{16}|[0-9a-f]{64}")


class SqlRecordStore(RecordStore, RecordInventory, DeletionLedger, EvidenceArchive):
    """Deletes a record's rows table by table (plan order), at most `batch_size` rows per call,
    and keeps the ledger of requests and attempts (`sql_ledger`) and its evidence.

    Each batch is one transaction: the rows and an audit row recording how many went from which
    table, for which attempt, by which worker, chained by hash to the record's previous audit row
    (`evidence_chain`), so the audit table counts executed batches exactly (a rolled-back batch
    leaves no audit row) and an edit shows. The batch that finds nothing left closes the attempt
    in that same transaction, with the record's final counts and the chain's head.

    `identity`: the worker's name and the keys of hashed ledger ids and of the chain. The ledger
    stores `identity.stored_id(id)`; the deletes always use the id itself.
    """

    JOIN_TRIES = 5  # joins racing to open the same attempt: the loser retries and joins it

    def __init__(
        self,
        engine: Engine,
        plan: DeletionPlan,
        *,
        audit: bool = True,
        identity: AuditIdentity | None = None,
    ) -> None:
        self._engine = engine
        self._plan = plan
        self._audit = audit
        self._identity = identity or AuditIdentity()
        self._validated = False
        self._lock = threading.Lock()

    def _ledger(self, record_id: RecordId) -> RecordId:
        """The record as the ledger names it (the HMAC of its id when ledger ids are hashed)."""
        stored = self._identity.stored_id(record_id.value)
        return record_id if stored == record_id.value else RecordId(stored)

    def join_attempt(self, record_id: RecordId, request: RequestRef, request_key: str) -> JoinedAttempt:
        for attempt in range(self.JOIN_TRIES):
            try:
                with self._engine.begin() as conn:
                    return sql_ledger.join(
                        conn, self._ledger(record_id), request, request_key, str(self._plan)
                    )
            except IntegrityError:
                if attempt == self.JOIN_TRIES - 1:
                    raise RecordStoreUnavailable(
                        "joining a deletion attempt kept colliding; retrying"
                    ) from None
            except SQLAlchemyError as exc:
                raise translate(exc, "registering a request in the deletion ledger") from exc
        raise AssertionError("unreachable")

    def fail_attempt(self, record_id: RecordId, attempt: int, reason: str) -> AttemptTotals:
        counts = self._final_counts(record_id)
        ledger = self._ledger(record_id)
        try:
            with self._engine.begin() as conn:
                head = sql_ledger.attempt_head(conn, ledger, attempt)
                return sql_ledger.close(conn, ledger, attempt, "failed", reason, counts, head)
        except SQLAlchemyError as exc:
            raise translate(exc, "closing a failed deletion attempt") from exc

    def _final_counts(self, record_id: RecordId) -> dict[str, int] | None:
        """The record's rows per plan table, for a failed attempt's evidence: counted just before
        the closing transaction (in a transaction of their own, so that a count that fails — the
        failure may be a table the plan names and the database lacks — leaves them None instead of
        keeping the attempt from closing)."""
        try:
            with self._engine.connect() as conn:
                return {
                    step.table: int(conn.execute(count, {"key": record_id.value}).scalar_one())
                    for step, count in zip(self._plan.steps, self._counts, strict=True)
                }
        except SQLAlchemyError:
            return None

    def record_answer(self, answer: Answer, delivery: Delivery) -> None:
        stored = self._ledger(answer.record_id).value
        try:
            with self._engine.begin() as conn:
                sql_audit.write_answer(conn, self._identity, stored, answer, delivery)
        except SQLAlchemyError as exc:
            raise translate(exc, "recording an answer's coordinates") from exc

    def history(self, record_id: RecordId) -> RecordHistory | None:
        return self.history_of_stored(self._ledger(record_id).value)

    def find_history(self, given: str) -> RecordHistory | None:
        """The id as given (hashed first when the ledger hashes ids); with a hashed ledger also its
        HMAC as the ledger (64 hex digits) or a log line (the first 16) shows it."""
        found = self.history(RecordId(given))
        if found is not None or self._identity.ledger_key is None or not _HASH_FORMS.fullmatch(given):
            return found
        if len(given) == 64:
            return self.history_of_stored(given)
        matches = self.stored_ids_starting(given)
        if len(matches) > 1:
            raise InvalidRecordId(f"{given} starts more than one hashed id; give all 64 hex digits")
        return self.history_of_stored(matches[0]) if matches else None

    def history_of_stored(self, stored_id: str) -> RecordHistory | None:
        """`history` by the id as the ledger stores it (a hashed ledger's 64 hex digits)."""
        try:
            with self._engine.connect() as conn:
                return sql_evidence.record_history(conn, stored_id, chain_key=self._identity.chain_key)
        except SQLAlchemyError as exc:
            raise translate(exc, "reading the deletion evidence") from exc

    def stored_ids_starting(self, prefix: str, limit: int = 2) -> list[str]:
        """Ledger ids that start with `prefix` (a hashed id as the logs show it: 16 hex digits)."""
        try:
            with self._engine.connect() as conn:
                return sql_evidence.stored_ids_starting(conn, prefix, limit)
        except SQLAlchemyError as exc:
            raise translate(exc, "reading the deletion ledger") from exc

    def prune(self, finished_before: datetime, *, dry_run: bool) -> PruneCounts:
        try:
            return sql_retention.prune(self._engine, finished_before, dry_run=dry_run)
        except SQLAlchemyError as exc:
            raise translate(exc, "pruning the deletion evidence") from exc

    def attempts(self, record_id: RecordId) -> list[AttemptRecord]:
        try:
            with self._engine.connect() as conn:
                return sql_ledger.attempts(conn, self._ledger(record_id))
        except SQLAlchemyError as exc:
            raise translate(exc, "reading the deletion ledger") from exc

    def latest_attempts(self, state: str | None, limit: int) -> list[AttemptRecord]:
        try:
            with self._engine.connect() as conn:
                return sql_ledger.latest(conn, state, limit)
        except SQLAlchemyError as exc:
            raise translate(exc, "reading the deletion ledger") from exc

    def join_and_delete(
        self, record_id: RecordId, request: RequestRef, request_key: str, batch_size: int
    ) -> tuple[JoinedAttempt, BatchResult | None]:
        """The join and the opener's first batch in one transaction (one commit per small record
        instead of two). Any trouble rolls both back and falls back to the join alone: the
        caller's `delete_batch` then meets the trouble with its own error handling."""
        try:
            self._validate_plan()
            with self._engine.begin() as conn:
                joined = sql_ledger.join(conn, self._ledger(record_id), request, request_key, str(self._plan))
                if joined.opened_by != request_key or joined.state != "running":
                    return joined, None
                doing = ["deleting"]
                return joined, self._batch(conn, record_id, batch_size, joined.number, doing, locked=True)
        except (SQLAlchemyError, DeletionPlanInvalid):
            return self.join_attempt(record_id, request, request_key), None

    def delete_batch(self, record_id: RecordId, batch_size: int, attempt: int) -> BatchResult:
        self._validate_plan()
        doing = ["deleting"]
        try:
            with self._engine.begin() as conn:
                return self._batch(conn, record_id, batch_size, attempt, doing)
        except SQLAlchemyError as exc:
            raise translate(exc, doing[0]) from exc

    def _batch(
        self,
        conn: Connection,
        record_id: RecordId,
        batch_size: int,
        attempt: int,
        doing: list[str],
        *,
        locked: bool = False,
    ) -> BatchResult:
        """One batch inside the caller's transaction; `doing[0]` says what it was doing last.
        `locked`: the transaction holds the attempt's row lock already (the join took it)."""
        key = record_id.value
        ledger = self._ledger(record_id)
        doing[0] = "reading the deletion audit"
        previous = sql_audit.chain_tail(conn, ledger.value, attempt, locked=locked) if self._audit else ""
        per_table, more = self._delete_rows(conn, key, batch_size, doing)
        deleted = sum(per_table)
        doing[0] = "writing the deletion audit"
        head = None
        if self._audit:
            tables = tables_json(zip((s.table for s in self._plan.steps), per_table, strict=True))
            head = sql_audit.write_batch(
                conn, self._identity, ledger.value, attempt, deleted, tables, previous
            )
        if more:
            return BatchResult(deleted=deleted, more=True)
        # Every plan table's "rows left?" probe found none in this transaction: the final counts.
        final = dict.fromkeys((s.table for s in self._plan.steps), 0)
        totals = sql_ledger.close(conn, ledger, attempt, "done", None, final, head)
        return BatchResult(deleted=deleted, more=False, totals=totals)

    def _delete_rows(
        self, conn: Connection, key: str, batch_size: int, doing: list[str]
    ) -> tuple[list[int], bool]:
        """Up to `batch_size` of the record's rows, table by table in plan order: the rows deleted
        per plan table, and whether any remain."""
        budget = batch_size
        more = False
        per_table = [0] * len(self._statements)
        last = len(self._statements) - 1
        for i, (step, (delete_rows, rows_left)) in enumerate(
            zip(self._plan.steps, self._statements, strict=True)
        ):
            doing[0] = f"deleting from {step.table}"
            result = conn.execute(delete_rows, {"key": key, "n": budget})
            per_table[i] = max(result.rowcount, 0)
            budget -= per_table[i]
            if budget == 0 and i < last:
                # A full batch before the plan's last table: that table's rows (the parent) are
                # still there, so there is more. No probe needed.
                more = True
                break
            if conn.execute(rows_left, {"key": key}).scalar():
                # Rows remain in this table: the batch is full, or (fewer deleted than asked) a
                # concurrent batch holds them (PostgreSQL skips rows it deleted). Stop here, so a
                # parent is never purged before its children.
                more = True
                break
        return per_table, more

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
    def _counts(self) -> tuple[Executable, ...]:
        """Per plan table: how many rows of the record it holds (a failed attempt's final counts)."""
        out = []
        for step in self._plan.steps:
            t = table(step.table, column(step.key_column))
            out.append(select(func.count()).select_from(t).where(t.c[step.key_column] == bindparam("key")))
        return tuple(out)

    def plan_problems(self) -> tuple[list[str], list[str]]:
        """What keeps the deletion plan from working (errors), and what makes it slow (warnings)."""
        errors: list[str] = []
        warnings: list[str] = []
        inspector = inspect(self._engine)
        for step in self._plan.steps:
            if not inspector.has_table(step.table):
                errors.append(
                    f"DATABASE_DELETION_PLAN names table {step.table!r}, which does not exist in the database"
                )
                continue
            names = {c["name"] for c in inspector.get_columns(step.table)}
            missing = [c for c in (step.key_column, step.pk_column) if c not in names]
            for col in missing:
                errors.append(
                    f"DATABASE_DELETION_PLAN names column {step.table}.{col}, which does not exist "
                    f"(columns: {', '.join(sorted(names))})"
                )
            if not missing:
                indexed = {
                    next(iter(ix["column_names"]))
                    for ix in inspector.get_indexes(step.table)
                    if ix.get("column_names")
                }
                pk = inspector.get_pk_constraint(step.table).get("constrained_columns") or []
                if step.key_column not in indexed and pk[:1] != [step.key_column]:
                    warnings.append(
                        f"{step.table}.{step.key_column} has no index: every batch scans the whole table "
                        f"(CREATE INDEX ON {step.table} ({step.key_column}))"
                    )
        return errors, warnings

    def _validate_plan(self) -> None:
        if self._validated:
            return
        with self._lock:
            if self._validated:
                return
            try:
                errors, _ = self.plan_problems()
            except NoSuchTableError as exc:
                raise DeletionPlanInvalid(f"deletion plan names a missing table: {exc}") from exc
            except SQLAlchemyError as exc:
                raise translate(exc, "reading the schema") from exc
            if errors:
                raise DeletionPlanInvalid(errors[0])
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
        try:
            with self._engine.connect() as conn:
                for count in self._counts:
                    total += conn.execute(count, {"key": record_id.value}).scalar_one()
        except SQLAlchemyError as exc:
            raise translate(exc, "counting the record's rows") from exc
        return total

    def batches_done(self, record_id: RecordId) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(deletion_audit)
                    .where(deletion_audit.c.record_id == self._ledger(record_id).value)
                ).scalar_one()
            )
