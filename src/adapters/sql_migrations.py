"""Applies the project's Alembic migrations programmatically (`db upgrade`, `demo`, tests).

The migrations ship inside the package (`record_deleter.migrations`), so an installed wheel
finds them without a checkout; `alembic.ini` at the top of the repository is only for running
the `alembic` command by hand during development.
"""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from .sql_engine import make_engine
from .sql_schema import VERSION_TABLE, create_demo_tables


def alembic_config(url: str) -> Config:
    """Alembic config for `url`, pointing at the migrations inside the installed package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(files("record_deleter.migrations")))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logging"] = False
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current_revision(engine: Engine) -> str | None:
    """The project's schema revision in the database (None: never migrated)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def current_head() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    return head or ""


def prepare_demo_database(url: str) -> None:
    """The project's schema plus the sample application's tables (demo, seed, tests)."""
    upgrade(url)
    engine = make_engine(url, pool_size=1)
    try:
        create_demo_tables(engine)
    finally:
        engine.dispose()
