"""`record-deleter`: one command, subcommands worker | produce | setup-topics | seed | demo | status | db."""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..domain.errors import BrokerUnavailable, DomainError, HandOffUnavailable
from ..domain.messages import encode_request
from ..domain.model import RecordId
from .bootstrap import bootstrap
from .progress import Progress
from .settings import Settings, SettingsError, load_settings

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="record-deleter",
        description="Consume deletion requests from Kafka/Redpanda and run one durable Resonate workflow per "
        "record that deletes its rows batch by batch, then publishes a completion. Settings come from "
        "environment variables (BROKER_*, DATABASE_*, RESONATE_*, WORKFLOW_*, WORKER_*) and an optional TOML "
        "file; see README.md.",
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

    status = sub.add_parser("status", help="state of a record's workflow and rows left")
    status.add_argument("record_id")

    db = sub.add_parser("db", help="database schema (Alembic)")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_sub.add_parser("upgrade", help="apply migrations up to REVISION (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    return p


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise SettingsError(f"invalid argument {name} = {value}: must be at least 1")


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
        if args.command == "produce":
            _positive("-n", args.n)
        if args.command == "seed":
            _positive("--records", args.records)
    except SettingsError as exc:
        print(f"record-deleter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings)
    try:
        return _dispatch(args, settings)
    except (BrokerUnavailable, HandOffUnavailable) as exc:
        print(f"record-deleter: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except DomainError as exc:
        print(f"record-deleter: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def configure_logging(settings: Settings) -> None:
    level, fmt = settings.worker.log_level, settings.worker.log_format
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(message)s" if fmt == "json" else "%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # The SDK logs every retry of an unreachable server at WARNING; keep ours readable.
    logging.getLogger("resonate").setLevel(max(logging.WARNING, getattr(logging, level)))


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    match args.command:
        case "worker":
            from .containers import WorkerContainer
            from .worker import run_worker

            return run_worker(bootstrap(WorkerContainer, settings))
        case "demo":
            from .containers import DemoContainer
            from .demo import DEFAULT_ROWS, run_demo

            return run_demo(
                bootstrap(DemoContainer, settings), rows=(args.big, *DEFAULT_ROWS[1:]), timeout=args.timeout
            )
        case "produce":
            return _produce(args, settings)
        case "setup-topics":
            return _setup_topics(settings)
        case "seed":
            return _seed(args, settings)
        case "status":
            return _status(args, settings)
        case "db":
            from ..adapters.sql_migrations import upgrade

            if settings.database.kind != "sql":
                print(
                    "record-deleter: DATABASE_URL is 'memory'; there is no schema to migrate", file=sys.stderr
                )
                return EXIT_USAGE
            upgrade(settings.database.url, args.revision)
            print(f"database at revision {args.revision}")
            return 0
    return EXIT_USAGE


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from .containers import ProducerContainer

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
    return 0


def _setup_topics(settings: Settings) -> int:
    from .containers import AdminContainer

    b = settings.broker
    outcome = (
        bootstrap(AdminContainer, settings)
        .topic_admin()
        .create(
            {
                b.request_topic: b.partitions,
                b.completion_topic: b.partitions,
                b.failure_topic: 1,
                b.dead_letter_topic: 1,
            },
            replication_factor=b.replication_factor,
        )
    )
    for name, what in outcome.items():
        print(f"{name}: {what}")
    return 0


def _seed(args: argparse.Namespace, settings: Settings) -> int:
    from .containers import AdminContainer

    container = bootstrap(AdminContainer, settings)
    try:
        container.create_demo_tables()  # seed writes the demo schema's tables (records, record_rows)
        store = container.record_store()
        rng = random.Random(args.seed)
        counts = [
            args.rows
            if args.rows is not None
            else round(10 ** rng.uniform(0, max(0.0, _log10(args.max_rows))))
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
    return 0


def _log10(x: int) -> float:
    import math

    return math.log10(max(1, x))


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from .containers import AdminContainer

    record_id = RecordId(args.record_id)
    container = bootstrap(AdminContainer, settings)
    try:
        state = container.runtime().status(record_id)
        store = container.record_store()
        report = {
            "record_id": record_id.value,
            "workflow": state.state,
            "batches_done": store.batches_done(record_id),
            "rows_left": store.count_rows(record_id),
            "result": state.detail,
        }
    finally:
        container.shutdown_resources()
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
