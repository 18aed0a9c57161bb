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


def run_checks(container: Any, settings: Settings, *, apply_group: bool = False) -> list[Finding]:
    """Every check, in the order a person would fix them: database, plan, broker, Resonate.
    `apply_group` (the worker's start): also give the consumer group its session timeout."""
    findings: list[Finding] = []
    findings += _database(container, settings)
    findings += _broker(container, settings)
    if apply_group and not any(f.level in ("error", "unreachable") for f in findings):
        findings += group_session(container.topic_admin(), settings)
    findings += _resonate(settings)
    return findings


def group_session(admin: Any, settings: Settings) -> list[Finding]:
    """With the consumer protocol (KIP-848) the broker keeps each group's session timeout: set
    BROKER_SESSION_TIMEOUT_SECONDS on the group, so a SIGKILLed worker's partitions move after it
    rather than after the broker's default (45 s on Kafka). A refusal is a warning, not fatal:
    the group still works, only slower to fail over."""
    b = settings.broker
    if b.kind == "memory" or b.effective_group_protocol != "consumer":
        return []
    refused = admin.set_group_session_timeout(b.group, b.session_timeout_seconds)
    if refused is None:
        return [Finding("ok", f"consumer group {b.group}: session timeout {b.session_timeout_seconds:g} s")]
    return [
        Finding(
            "warning",
            f"consumer group {b.group}: the broker refused a session timeout of "
            f"{b.session_timeout_seconds:g} s ({refused}); a crashed worker's partitions wait for the "
            "broker's default instead. Lower the broker's group.consumer.min.session.timeout.ms, grant "
            "ALTER_CONFIGS on the group, or set BROKER_SESSION_TIMEOUT_SECONDS within the range",
        )
    ]


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
