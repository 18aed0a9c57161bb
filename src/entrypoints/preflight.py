"""Pre-flight: what `record-deleter check` and the start of `worker` verify before any message is
taken — so a request is never taken by a worker that cannot answer it.

Each finding is one line naming what is wrong and how to fix it. A misconfiguration (schema not
migrated, a plan naming a missing table, a missing topic) is fatal (exit 2); an unreachable
service is reported as such (exit 3: a supervisor restarts the worker later).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ..adapters.resonate_runtime import probe_server
from ..adapters.sql_migrations import current_head, current_revision
from ..domain.errors import BrokerRefused, BrokerUnavailable
from .settings import Settings


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # error | unreachable | warning | ok
    text: str


def run_checks(container: Any, settings: Settings) -> list[Finding]:
    """Every check, in the order a person would fix them: database, plan, broker, Resonate."""
    findings: list[Finding] = []
    findings += _database(container, settings)
    findings += _broker(container, settings)
    findings += _resonate(settings)
    return findings


def _database(container: Any, settings: Settings) -> list[Finding]:
    db = settings.database
    if db.kind == "memory":
        return [Finding("ok", "database: in memory (trials only: nothing is deleted anywhere)")]
    try:
        revision, head = current_revision(container.database.engine()), current_head()
    except SQLAlchemyError as exc:
        cause = type(getattr(exc, "orig", None) or exc).__name__
        return [Finding("unreachable", f"database {db.display_url}: cannot connect ({cause})")]
    if revision != head:
        return [
            Finding(
                "error",
                f"database {db.display_url}: schema revision is {revision or 'none'}, the worker needs "
                f"{head}; run 'record-deleter db upgrade'",
            )
        ]
    errors, warnings = container.record_store().plan_problems()
    found = [Finding("error", f"{e}; fix DATABASE_DELETION_PLAN or the schema") for e in errors]
    found += [Finding("warning", w) for w in warnings]
    return found or [
        Finding("ok", f"database {db.display_url}: schema {head}, deletion plan {db.deletion_plan}")
    ]


def _broker(container: Any, settings: Settings) -> list[Finding]:
    b = settings.broker
    if b.kind == "memory":
        return [Finding("ok", "broker: in-process (trials only)")]
    admin = container.topic_admin()
    found: list[Finding] = []
    try:
        for topic in (b.request_topic, b.completion_topic, b.failure_topic, b.dead_letter_topic):
            if admin.partitions(topic) == 0:
                found.append(
                    Finding(
                        "error",
                        f"topic {topic} does not exist on {b.bootstrap_servers}; "
                        "run 'record-deleter setup-topics'",
                    )
                )
    except BrokerRefused as exc:  # wrong credentials or certificate: a setting to fix (exit 2)
        return [Finding("error", f"broker {b.bootstrap_servers}: {exc}")]
    except BrokerUnavailable as exc:
        return [Finding("unreachable", f"broker {b.bootstrap_servers}: {exc}")]
    return found or [Finding("ok", f"broker {b.bootstrap_servers}: topics present")]


def _resonate(settings: Settings) -> list[Finding]:
    r = settings.resonate
    if r.mode == "local":
        return [Finding("ok", "resonate: local (in-memory; workflows do not survive a restart)")]
    problem = probe_server(r.url, r.auth)
    if problem is None:
        return [Finding("ok", f"resonate server {r.url}: reachable")]
    level = "error" if "refused the credentials" in problem else "unreachable"
    return [Finding(level, f"resonate server {r.url}: {problem}")]
