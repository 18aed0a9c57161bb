"""The one harness of the integration tests, the system tests and the benchmarks.

endpoints   where the real services are (the names `scripts/services.sh up` exports), waits
kafka       topics, producing, reading topics, committed lag, consumer-group state
processes   `record-deleter` subprocesses (JSON event logs), the crash-counting supervisor
events      the workers' structured events (one JSON object per stderr line)
metrics     the Prometheus endpoint, CPU seconds and peak RSS of processes
database    schema, seeding, audit counts, scratch databases
services    services.sh outages, private Resonate servers (flags only in services.sh)
deployment  an isolated deployment on the shared services and the figures of a run
"""

from .database import scratch_database
from .deployment import Deployment, Outcome, Record, report
from .endpoints import (
    ROOT,
    MissingEndpoint,
    free_port,
    kafka_bootstrap,
    postgres_url,
    resonate_endpoint,
    services_dir,
    unique,
    wait_for,
)
from .events import Event, EventLog
from .kafka import (
    Read,
    TopicReader,
    Topics,
    committed_lag,
    completion_ids,
    create_topics,
    delete_topics,
    group_ready,
    produce,
    read_topic,
    topic_reader,
)
from .metrics import CpuMeter, scrape, service_pids
from .processes import (
    FAULT_WORKER_COMMAND,
    WORKER_COMMAND,
    Process,
    Supervisor,
    check_errors,
    cli_env,
    evidence_report,
    first_handoffs,
    held_partitions,
    holders,
    run_cli,
    worker_env,
    worker_process,
)
from .services import ResonateServer, outage, postgres_store_args, resonate_server, services

__all__ = [
    "FAULT_WORKER_COMMAND",
    "ROOT",
    "WORKER_COMMAND",
    "CpuMeter",
    "Deployment",
    "Event",
    "EventLog",
    "MissingEndpoint",
    "Outcome",
    "Process",
    "Read",
    "Record",
    "ResonateServer",
    "Supervisor",
    "TopicReader",
    "Topics",
    "check_errors",
    "cli_env",
    "committed_lag",
    "completion_ids",
    "create_topics",
    "delete_topics",
    "evidence_report",
    "first_handoffs",
    "free_port",
    "group_ready",
    "held_partitions",
    "holders",
    "kafka_bootstrap",
    "outage",
    "postgres_store_args",
    "postgres_url",
    "produce",
    "read_topic",
    "report",
    "resonate_endpoint",
    "resonate_server",
    "run_cli",
    "scrape",
    "scratch_database",
    "service_pids",
    "services",
    "services_dir",
    "topic_reader",
    "unique",
    "wait_for",
    "worker_env",
    "worker_process",
]
