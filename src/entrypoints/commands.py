"""The operator commands: produce, setup-topics, seed, status, list, retry, check, db upgrade,
config show, evidence, audit prune.

Each takes the parsed arguments and the settings, builds its container through `bootstrap` and
returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from ..domain.errors import InvalidRecordId
from ..domain.messages import encode_request
from ..domain.model import AttemptRecord, RecordId
from .bootstrap import bootstrap
from .containers import AdminContainer, ProducerContainer
from .evidence_report import as_json, as_markdown
from .preflight import group_session, run_checks
from .progress import Progress
from .settings import Settings, effective_settings

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_CHAIN_BROKEN = 1  # `evidence`: the audit chain does not verify
EXIT_NEVER_REQUESTED = 4  # `evidence`: the ledger holds nothing about the record
RETRY_HEADER = "record-deleter-retry-of"


def produce(args: argparse.Namespace, settings: Settings) -> int:
    producer = bootstrap(ProducerContainer, settings).request_producer()
    topic = settings.broker.request_topic
    progress = Progress(f"produce to {topic}", args.n)
    for i in range(args.n):
        record_id = RecordId(f"{args.prefix}{args.start + i:06d}")
        value = (
            encode_request(record_id)
            if args.format == "string"
            else json.dumps([record_id.value, i]).encode()
        )
        producer.send(topic, value, record_id.value.encode())
        progress.update(i + 1)
    producer.flush()
    print(f"produced {args.n} requests to {topic}")
    return EXIT_OK


def setup_topics(settings: Settings) -> int:
    b = settings.broker
    admin = bootstrap(AdminContainer, settings).topic_admin()
    outcome = admin.create(
        {
            b.request_topic: b.partitions,
            b.completion_topic: b.partitions,
            b.failure_topic: 1,
            b.dead_letter_topic: 1,
        },
        replication_factor=b.replication_factor,
    )
    for name, what in outcome.items():
        print(f"{name}: {what}")
    for f in group_session(admin, settings):
        if f.level == "ok":
            print(f.text)
        else:
            print(f"record-deleter: {f.level}: {f.text}", file=sys.stderr)
    return EXIT_OK


def seed(args: argparse.Namespace, settings: Settings) -> int:
    container = bootstrap(AdminContainer, settings)
    try:
        container.create_demo_tables()  # seed writes the demo schema's tables (records, record_rows)
        store = container.record_store()
        rng = random.Random(args.seed)
        top = math.log10(max(1, args.max_rows))
        counts = [
            args.rows if args.rows is not None else round(10 ** rng.uniform(0, top))
            for _ in range(args.records)
        ]
        progress = Progress("seed rows", sum(counts))
        done = 0
        for i, n in enumerate(counts):
            store.add_record(RecordId(f"{args.prefix}{args.start + i:06d}"), n)
            done += n
            progress.update(done)
        print(
            f"seeded {args.records} records, {sum(counts):,} rows ({min(counts)}..{max(counts)} per record)"
        )
    finally:
        container.shutdown_resources()
    return EXIT_OK


def _attempt_json(a: AttemptRecord) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "state": a.state,
        "requests": a.requests,
        "rows_deleted": a.totals.rows_deleted,
        "batches": a.totals.batches,
        "started_at": a.started_at,
        "finished_at": a.finished_at,
        "reason": a.reason,
    }


def status(args: argparse.Namespace, settings: Settings) -> int:
    """never requested | running (how far) | done (when, how many rows) | failed (why)."""
    record_id = RecordId(args.record_id)
    container = bootstrap(AdminContainer, settings)
    try:
        store = container.record_store()
        attempts = store.attempts(record_id)
        report: dict[str, Any] = {"record_id": record_id.value}
        if not attempts:
            report["state"] = "never requested"
        else:
            report |= {"state": attempts[-1].state, **_attempt_json(attempts[-1])}
            report["attempts"] = [_attempt_json(a) for a in attempts]
        report["rows_left"] = store.count_rows(record_id)
    finally:
        container.shutdown_resources()
    print(json.dumps(report, indent=2, default=str))
    return EXIT_OK


def list_records(args: argparse.Namespace, settings: Settings) -> int:
    """The latest attempt of each record, newest first; `pending` = running without a batch yet."""
    container = bootstrap(AdminContainer, settings)
    state = {"pending": "running"}.get(args.state, args.state)
    try:
        found = container.record_store().latest_attempts(state, args.limit)
    finally:
        container.shutdown_resources()
    if args.state == "pending":
        found = [a for a in found if a.totals.batches == 0]
    elif args.state == "running":
        found = [a for a in found if a.totals.batches > 0]
    if args.format == "json":
        print(json.dumps([{"record_id": a.record_id, **_attempt_json(a)} for a in found], default=str))
        return EXIT_OK
    for a in found:
        when = (a.finished_at or a.started_at).isoformat(timespec="seconds")
        shown = "pending" if a.state == "running" and a.totals.batches == 0 else a.state
        reason = f"  {a.reason}" if a.reason else ""
        print(f"{a.record_id}\tattempt {a.attempt}\t{shown}\t{a.totals.rows_deleted} rows\t{when}{reason}")
    return EXIT_OK


def retry(args: argparse.Namespace, settings: Settings) -> int:
    """Request a new attempt for a failed record: a request message like any other, so it is
    answered on the completion or failure topic like any other."""
    record_id = RecordId(args.record_id)
    container = bootstrap(AdminContainer, settings)
    try:
        attempts = container.record_store().attempts(record_id)
    finally:
        container.shutdown_resources()
    state = attempts[-1].state if attempts else "never requested"
    if state != "failed":
        print(
            f"record-deleter: record {record_id.value!r} is {state}, not failed; "
            "only a failed record is retried",
            file=sys.stderr,
        )
        return EXIT_USAGE
    producer = bootstrap(ProducerContainer, settings).request_producer()
    producer.send(
        settings.broker.request_topic,
        encode_request(record_id),
        record_id.value.encode(),
        ((RETRY_HEADER, str(attempts[-1].attempt).encode()),),
    )
    producer.flush()
    print(
        f"requested attempt {attempts[-1].attempt + 1} of {record_id.value!r} "
        f"on {settings.broker.request_topic}"
    )
    return EXIT_OK


def check(settings: Settings, *, quiet_ok: bool = False, apply_group: bool = False) -> int:
    """Every pre-flight check, one line each; exit 2 for a misconfiguration, 3 for an unreachable service.
    `apply_group` (the worker's start): also set the consumer group's session timeout."""
    container = bootstrap(AdminContainer, settings)
    try:
        findings = run_checks(container, settings, apply_group=apply_group)
    finally:
        container.shutdown_resources()
    for f in findings:
        if f.level == "ok" and quiet_ok:
            continue
        if settings.worker.json_logs:  # the worker's one JSON stream
            level = {"ok": logging.INFO, "warning": logging.WARNING}.get(f.level, logging.ERROR)
            logging.getLogger("record_deleter.check").log(level, f.text, extra={"check": f.level})
            continue
        print(f"record-deleter: {f.level}: {f.text}" if f.level != "ok" else f"ok: {f.text}", file=sys.stderr)
    if any(f.level == "error" for f in findings):
        return EXIT_USAGE
    if any(f.level == "unreachable" for f in findings):
        return EXIT_UNAVAILABLE
    return EXIT_OK


def db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy.exc import OperationalError

    from ..adapters.sql_migrations import upgrade

    url = settings.database.url_value
    if settings.database.kind != "sql" or url is None:
        print("record-deleter: DATABASE_URL is 'memory'; there is no schema to migrate", file=sys.stderr)
        return EXIT_USAGE
    try:
        upgrade(url, args.revision)
    except OperationalError as exc:
        # the database cannot be reached (or refused the login): one line, not a traceback
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
        print(
            f"record-deleter: unreachable: database {settings.database.display_url}: {reason}",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    print(f"database at revision {args.revision}")
    return EXIT_OK


def config_show(settings: Settings) -> int:
    """Every setting in effect, `ENV_NAME=value` a line; secrets as `***`, unset ones empty."""
    for name, value in effective_settings(settings):
        print(f"{name}={value}")
    return EXIT_OK


def evidence(args: argparse.Namespace, settings: Settings) -> int:
    """A record's requests, attempts, batches, final counts and answers, and its audit chain
    checked: exit 0 intact, 1 broken, 4 never requested (2: a bad id, refused before)."""
    container = bootstrap(AdminContainer, settings)
    try:
        history = container.record_store().find_history(args.record_id)
    except InvalidRecordId as exc:  # an ambiguous hash prefix: a bad id (2), not a broken chain (1)
        print(f"record-deleter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        container.shutdown_resources()
    if history is None:
        print(f"record-deleter: record {args.record_id!r} was never requested (nothing in the ledger)")
        return EXIT_NEVER_REQUESTED
    print(as_json(history) if args.format == "json" else as_markdown(history))
    return EXIT_OK if history.chain.intact else EXIT_CHAIN_BROKEN


def audit_prune(args: argparse.Namespace, settings: Settings) -> int:
    """Remove closed attempts finished more than --older-than days ago (AUDIT_RETENTION_DAYS),
    with their batches, requests and answers; print what went."""
    days = args.older_than if args.older_than is not None else settings.audit.retention_days
    cutoff = datetime.now(UTC) - timedelta(days=days)
    container = bootstrap(AdminContainer, settings)
    try:
        counts = container.record_store().prune(cutoff, dry_run=args.dry_run)
    finally:
        container.shutdown_resources()
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{verb} {counts.attempts} attempts finished before {cutoff.isoformat(timespec='seconds')} "
        f"({days} days): {counts.batches} batches, {counts.requests} requests, {counts.answers} answers"
    )
    return EXIT_OK
