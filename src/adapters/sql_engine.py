"""Engine construction for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def make_engine(url: str, *, pool_size: int) -> Engine:
    """An engine tuned for many short transactions from workflow threads."""
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
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
