"""`record-deleter`: one command; its subcommands are listed by `record-deleter --help`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from .. import __version__
from ..adapters.observability import RepeatFilter
from ..domain.errors import (
    BrokerUnavailable,
    DeletionPlanInvalid,
    DomainError,
    HandOffUnavailable,
    InvalidRecordId,
    RecordStoreUnavailable,
)
from ..domain.model import RecordId
from . import commands
from .bootstrap import bootstrap
from .settings import Settings, SettingsError, load_settings

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
NEEDS_DATABASE = (
    "worker",
    "seed",
    "status",
    "list",
    "retry",
    "check",
    "db",
    "evidence",
    "audit",
    "dashboard",
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="record-deleter",
        description="Consume deletion requests from Kafka/Redpanda and run one durable Resonate workflow per "
        "record that deletes its rows batch by batch, then publishes a completion. Settings come from "
        "environment variables (BROKER_*, DATABASE_*, RESONATE_*, WORKFLOW_*, WORKER_*, AUDIT_*,"
        " DASHBOARD_*) and an "
        "optional TOML file; see README.md.",
    )
    p.add_argument("--version", action="version", version=f"record-deleter {__version__}")
    p.add_argument(
        "--config", metavar="FILE", help="TOML settings file (env vars win); or RECORD_DELETER_CONFIG"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("worker", help="consume requests and hand each off to a durable workflow (until SIGTERM)")

    prod = sub.add_parser("produce", help="produce N deletion requests in the reference example's format")
    prod.add_argument("-n", type=int, required=True, help="number of requests")
    prod.add_argument(
        "--prefix", default="rec-", help="record id prefix (default: rec-), as `seed` names them"
    )
    prod.add_argument("--start", type=int, default=1, help="first record number (default: 1)")
    prod.add_argument(
        "--format", choices=("string", "array"), default="string", help='"id" (default) or ["id", n]'
    )

    sub.add_parser("setup-topics", help="create the request, completion, failure and dead-letter topics")

    seed = sub.add_parser("seed", help="create records with rows in the database")
    seed.add_argument("--records", type=int, required=True, help="number of records")
    seed.add_argument(
        "--rows", type=int, default=None, help="rows per record (default: random, see --max-rows)"
    )
    seed.add_argument(
        "--max-rows", type=int, default=10_000, help="upper bound of random row counts (log-uniform)"
    )
    seed.add_argument("--prefix", default="rec-", help="record id prefix (default: rec-)")
    seed.add_argument("--start", type=int, default=1, help="first record number (default: 1)")
    seed.add_argument("--seed", type=int, default=None, help="random seed for reproducible row counts")

    demo = sub.add_parser(
        "demo", help="run everything in one process on embedded defaults and verify the result"
    )
    demo.add_argument(
        "--db", default=".demo/record-deleter-demo.db", help="SQLite file (default: %(default)s)"
    )
    demo.add_argument(
        "--big",
        type=int,
        default=200_000,
        help="rows of the large record, first in line (default: %(default)s; keep it >=10x the others)",
    )
    demo.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for completion")

    status = sub.add_parser(
        "status",
        help="a record's deletion: never requested, running (how far), done (when, rows), failed (why)",
    )
    status.add_argument("record_id")

    listing = sub.add_parser("list", help="the latest deletion attempt of each record, newest first")
    listing.add_argument("--state", choices=("pending", "running", "done", "failed"), help="only this state")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default: %(default)s)")
    listing.add_argument("--format", choices=("text", "json"), default="text")

    retry = sub.add_parser("retry", help="request a new deletion attempt for a record whose last one failed")
    retry.add_argument("record_id")

    sub.add_parser(
        "check",
        help="verify the schema, the deletion plan, the topics and the Resonate server (as `worker` does)",
    )

    evidence = sub.add_parser(
        "evidence",
        help="a record's requests, attempts, batches, final counts and answers, and its audit chain "
        "checked (exit 0 intact, 1 broken, 2 bad id, 4 never requested)",
    )
    evidence.add_argument(
        "record_id", help="the record id (with AUDIT_RECORD_IDS=hashed also its HMAC: 16 or 64 hex digits)"
    )
    evidence.add_argument("--format", choices=("md", "json"), default="md")
    sub.add_parser(
        "dashboard",
        help="serve a web page: deletions in flight, recent answers, throughput, one record's history "
        "(DASHBOARD_ADDRESS, DASHBOARD_PORT)",
    )

    for name, command in sub.choices.items():  # `record-deleter COMMAND --help` says what it does
        command.description = next(a.help for a in sub._choices_actions if a.dest == name)
    db = sub.add_parser(
        "db", help="database schema (Alembic)", description="the project's own schema (Alembic)"
    )
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_sub.add_parser("upgrade", help="apply migrations up to REVISION (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    audit = sub.add_parser(
        "audit", help="the deletion evidence", description="the deletion evidence kept in the ledger"
    )
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    prune = audit_sub.add_parser(
        "prune",
        help="remove closed attempts finished before the retention period, with their batches, requests "
        "and answers (never a running attempt); run it daily",
        description="remove closed attempts finished before the retention period, with their batches, "
        "requests and answers (never a running attempt); run it daily",
    )
    prune.add_argument(
        "--older-than", type=int, metavar="DAYS", help="retention in days (default: AUDIT_RETENTION_DAYS)"
    )
    prune.add_argument("--dry-run", action="store_true", help="count what would go, remove nothing")
    config = sub.add_parser(
        "config", help="the settings in effect", description="the settings in effect (secrets masked)"
    )
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    config_sub.add_parser(
        "show",
        help="print every setting in effect, one ENV_NAME=value a line, secrets as ***",
        description="print every setting in effect, one ENV_NAME=value a line, secrets as ***",
    )
    return p


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise SettingsError(f"invalid argument {name} = {value}: must be at least 1")


def _validate(args: argparse.Namespace, settings: Settings) -> None:
    """Arguments and settings a command needs, each refused in one line (exit 2)."""
    if args.command == "produce":
        _positive("-n", args.n)
    if args.command == "seed":
        _positive("--records", args.records)
        if args.rows is not None and args.rows < 0:
            raise SettingsError(f"invalid argument --rows = {args.rows}: must be 0 or more")
    if args.command == "list":
        _positive("--limit", args.limit)
    if args.command in ("status", "retry", "evidence"):
        RecordId(args.record_id)
    if args.command == "audit" and args.older_than is not None:
        _positive("--older-than", args.older_than)
    if args.command in ("worker", "produce", "setup-topics") and settings.broker.kind == "memory":
        raise SettingsError(
            f"BROKER_KIND=memory is an in-process broker that only 'demo' can use: '{args.command}' "
            "would talk to an empty broker no other process reaches; use kafka or redpanda"
        )
    if args.command == "dashboard" and settings.database.kind == "memory":
        raise SettingsError(
            "DATABASE_URL=memory holds no ledger another process can read: 'dashboard' needs the "
            "workers' database (sqlite:///PATH or postgresql+psycopg://...)"
        )
    if args.command in NEEDS_DATABASE and settings.database.url is None:
        raise SettingsError(
            f"DATABASE_URL is not set: '{args.command}' needs the database whose rows are deleted "
            "(sqlite:///PATH, postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB, or 'memory' for a trial); "
            "only 'demo' runs on embedded defaults"
        )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, dict[str, Any]] = {}
    if args.command == "demo":
        from .demo import demo_overrides

        db_path = Path(args.db).resolve()
        db_path.parent.mkdir(parents=True, exist_ok=True)
        overrides = demo_overrides(db_path)
    try:
        settings = load_settings(args.config, overrides)
        _validate(args, settings)
    except (SettingsError, InvalidRecordId) as exc:
        print(f"record-deleter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings)
    try:
        return _dispatch(args, settings)
    except (BrokerUnavailable, HandOffUnavailable, RecordStoreUnavailable) as exc:
        print(f"record-deleter: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except DeletionPlanInvalid as exc:
        print(f"record-deleter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DomainError as exc:
        print(f"record-deleter: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def configure_logging(settings: Settings) -> None:
    """One stream on stderr for the project, librdkafka (through the clients' `logger`) and the
    Resonate SDK: text by default; with WORKER_LOG_FORMAT=json one JSON object per line with
    `time`, `level`, `logger`, `message` and the event's fields. Identical lines from one logger
    (a broker that stays down) are written once per 30 s, then counted."""
    level, fmt = getattr(logging, settings.worker.log_level), settings.worker.log_format
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RepeatFilter(window_seconds=30.0))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The SDK logs every retry of an unreachable server at WARNING; keep ours readable.
    logging.getLogger("resonate").setLevel(max(logging.WARNING, level))
    if fmt == "json":
        # the SDK's per-step lines (retries) join the stream, the workflow and step ids as fields
        # (a handler of its own keeps the SDK's text format otherwise: share_context_loggers)
        context = logging.getLogger("resonate.context")
        context.handlers[:] = [logging.NullHandler()]
        context.propagate = True


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    match args.command:
        case "worker":
            from .containers import WorkerContainer
            from .worker import run_worker

            code = commands.check(settings, quiet_ok=True, apply_group=True)
            return code if code else run_worker(bootstrap(WorkerContainer, settings))
        case "demo":
            from .containers import DemoContainer
            from .demo import DEFAULT_ROWS, run_demo

            return run_demo(
                bootstrap(DemoContainer, settings), rows=(args.big, *DEFAULT_ROWS[1:]), timeout=args.timeout
            )
        case "produce":
            return commands.produce(args, settings)
        case "setup-topics":
            return commands.setup_topics(settings)
        case "seed":
            return commands.seed(args, settings)
        case "status":
            return commands.status(args, settings)
        case "list":
            return commands.list_records(args, settings)
        case "retry":
            return commands.retry(args, settings)
        case "check":
            return commands.check(settings)
        case "db":
            return commands.db_upgrade(args, settings)
        case "config":
            return commands.config_show(settings)
        case "evidence":
            return commands.evidence(args, settings)
        case "audit":
            return commands.audit_prune(args, settings)
        case "dashboard":
            from .containers import DashboardContainer
            from .dashboard import run_dashboard

            return run_dashboard(bootstrap(DashboardContainer, settings))
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
