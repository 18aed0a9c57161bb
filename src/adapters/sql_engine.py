"""Engine construction for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def make_engine(
    url: str,
    *,
    pool_size: int,
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
) -> Engine:
    """An engine tuned for many short transactions from workflow threads.

    PostgreSQL: `statement_timeout`/`lock_timeout` (seconds; None or 0 = the server's, unlimited
    by default) are set on every connection, so a DELETE blocked on another session's lock fails
    (SQLSTATE 55P03/57014, a transient error: the step backs off and retries) instead of holding a
    step thread indefinitely. SQLite waits up to its busy timeout (30 s) instead."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # One connection per process: SQLite runs one writer at a time anyway, and threads queued
        # on the pool wake as soon as it is free, where threads on connections of their own poll
        # for SQLite's lock with growing sleeps (two thirds of the step threads' time with 8 of
        # them, in a profile of the benchmark's end-to-end run). Other processes still meet
        # SQLite's lock, and wait for it up to the busy timeout.
        in_memory = parsed.database in (None, "", ":memory:")
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            **({} if in_memory else {"pool_size": 1, "max_overflow": 0, "pool_timeout": 60}),
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    limits = {"statement_timeout": statement_timeout, "lock_timeout": lock_timeout}
    settings = {name: int(seconds * 1000) for name, seconds in limits.items() if seconds}
    if settings:

        @event.listens_for(engine, "connect")
        def _timeouts(dbapi_connection: Any, _record: Any) -> None:
            autocommit = dbapi_connection.autocommit
            dbapi_connection.autocommit = True  # session settings, outside any transaction
            with dbapi_connection.cursor() as cursor:
                for name, ms in settings.items():
                    cursor.execute(f"SET {name} = {ms}")
            dbapi_connection.autocommit = autocommit

    return engine


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """A time as read back from the database, time-zone aware: SQLite hands back naive values
    (the project writes them, and its CURRENT_TIMESTAMP is, in UTC); PostgreSQL aware ones."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
