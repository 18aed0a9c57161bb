"""Retention of the evidence: `audit prune` removes closed attempts finished before a cutoff,
with their audit rows, requests and answers.

Bounded transactions: at most `chunk` attempts per transaction, so a first prune of a large
ledger never holds locks for long or grows one transaction without limit. A running attempt is
never touched (its `finished_at` is NULL), and an attempt's rows go in the same transaction as
the attempt itself, so an interrupted prune leaves whole attempts, never half of one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Engine, delete, func, select, tuple_

from ..domain.evidence import PruneCounts
from .sql_schema import deletion_answers, deletion_attempts, deletion_audit, deletion_requests

CHUNK = 500
_CHILDREN = (("batches", deletion_audit), ("requests", deletion_requests), ("answers", deletion_answers))


def prune(engine: Engine, finished_before: datetime, *, dry_run: bool, chunk: int = CHUNK) -> PruneCounts:
    """Remove (or with `dry_run` only count) what the cutoff retires; returns the counts."""
    totals = dict.fromkeys(("attempts", "batches", "requests", "answers"), 0)
    after: tuple[str, int] = ("", 0)
    while True:
        with engine.begin() as conn:
            keys = _next_chunk(conn, finished_before, after, chunk)
            if not keys:
                break
            for name, count in _remove(conn, keys, dry_run).items():
                totals[name] += count
        after = keys[-1]
    return PruneCounts(**totals)


def _next_chunk(
    conn: Connection, finished_before: datetime, after: tuple[str, int], chunk: int
) -> list[tuple[str, int]]:
    """The next closed attempts past `after` (key order, so a dry run moves on too)."""
    a = deletion_attempts.c
    query = (
        select(a.record_id, a.attempt)
        .where(
            a.state != "running",
            a.finished_at.is_not(None),
            a.finished_at < finished_before,
            tuple_(a.record_id, a.attempt) > tuple_(*after),
        )
        .order_by(a.record_id, a.attempt)
        .limit(chunk)
    )
    return [(str(r), int(n)) for r, n in conn.execute(query)]


def _remove(conn: Connection, keys: list[tuple[str, int]], dry_run: bool) -> dict[str, int]:
    counts: dict[str, int] = {"attempts": len(keys)}
    for name, table in (*_CHILDREN, ("attempts", deletion_attempts)):
        match = tuple_(table.c.record_id, table.c.attempt).in_(keys)
        if dry_run:
            counts[name] = int(
                conn.execute(select(func.count()).select_from(table).where(match)).scalar_one()
            )
        else:
            counts[name] = conn.execute(delete(table).where(match)).rowcount
    return counts
