"""The containers of the composition root: adapter families, and one container per entrypoint.

Adapters come in families, each a whole container with the same provider names, and
`bootstrap.bootstrap` picks one per family from the settings, once:

* broker: `KafkaBroker` (`BROKER_KIND` kafka or redpanda: redpanda is only a connection profile)
  or `MemoryBroker` (the in-process broker of the demo and the unit tests);
* database: `SqlDatabase` (SQLite, PostgreSQL) or `MemoryDatabase`.

Settings reach the providers as the typed objects they are (`settings.provided.<concern>.<field>`);
every default lives in `settings.py`, and adapters take required arguments.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from dependency_injector import containers, providers
from sqlalchemy import Engine

from ..adapters.dashboard_http import DashboardApp, DashboardServer
from ..adapters.dashboard_overview import (
    DashboardOverview,
    OverviewLimits,
    RowsLeftCounter,
    history_document,
)
from ..adapters.evidence_chain import AuditIdentity
from ..adapters.kafka import (
    KafkaClientConfig,
    KafkaRequestProducer,
    KafkaRequestSource,
    KafkaTopicAdmin,
    KafkaTopicWriter,
)
from ..adapters.memory_broker import (
    InMemoryBroker,
    InMemoryRequestProducer,
    InMemoryRequestSource,
    InMemoryTopicAdmin,
    InMemoryTopicWriter,
)
from ..adapters.memory_store import InMemoryRecordStore
from ..adapters.observability import FanOutEvents, LoggingEvents, PrometheusEvents
from ..adapters.redpanda import redpanda_client_config
from ..adapters.resonate_pending import ResonatePendingRequests
from ..adapters.resonate_runtime import ResonateRuntime, StepRetry, build_resonate
from ..adapters.sql_engine import make_engine
from ..adapters.sql_schema import create_demo_tables
from ..adapters.sql_store import DeletionPlan, SqlRecordStore
from ..domain.handoff import HandOff, RetryBudget
from ..domain.messages import MAX_REQUEST_BYTES
from ..domain.model import WorkflowParams
from ..domain.publishing import TopicCompletionPublisher, TopicDeadLetterSink
from .settings import BrokerSettings, DatabaseSettings, Settings


def kafka_client_config(
    broker: BrokerSettings, properties: Mapping[str, str] | None = None
) -> KafkaClientConfig:
    """Connection settings of every Kafka client; the secrets are unwrapped here only.

    `properties`: librdkafka properties passed through (settings.librdkafka_properties)."""
    password = broker.sasl_password.get_secret_value() if broker.sasl_password else None
    key_password = broker.ssl_key_password.get_secret_value() if broker.ssl_key_password else None
    common: dict[str, Any] = {
        "sasl_username": broker.sasl_username,
        "sasl_password": password,
        "ssl_ca_location": broker.ssl_ca_location,
        "ssl_certificate_location": broker.ssl_certificate_location,
        "ssl_key_location": broker.ssl_key_location,
        "ssl_key_password": key_password,
        "extra": dict(properties or {}),
    }
    if broker.kind == "redpanda":
        return redpanda_client_config(
            broker.bootstrap_servers,
            sasl_mechanism=broker.effective_sasl_mechanism,
            security_protocol=broker.effective_security_protocol,
            **common,
        )
    return KafkaClientConfig(
        bootstrap_servers=broker.bootstrap_servers,
        security_protocol=broker.effective_security_protocol,
        sasl_mechanism=broker.effective_sasl_mechanism,
        **common,
    )


def _kafka_writer(client: KafkaClientConfig, delivery_timeout: float) -> Iterator[KafkaTopicWriter]:
    writer = KafkaTopicWriter(client, delivery_timeout=delivery_timeout)
    yield writer
    writer.close()  # flushes


def _engine(url: str, pool_size: int, statement_timeout: float, lock_timeout: float) -> Iterator[Engine]:
    engine = make_engine(
        url, pool_size=pool_size, statement_timeout=statement_timeout, lock_timeout=lock_timeout
    )
    yield engine
    engine.dispose()


def _runtime(**kwargs: object) -> Iterator[ResonateRuntime]:
    runtime = ResonateRuntime(**kwargs)  # type: ignore[arg-type]
    yield runtime
    runtime.stop()


def _pending_requests(settings: Settings) -> ResonatePendingRequests | None:
    """The dashboard's reader of pending request workflows: a Resonate server only (remote mode)."""
    if settings.resonate.mode != "remote":
        return None
    return ResonatePendingRequests(settings.resonate.url, settings.broker.group, settings.resonate.auth)


# ---------------------------------------------------------------------------------- broker families
class KafkaBroker(containers.DeclarativeContainer):
    """Kafka or Redpanda (same protocol; the connection profile differs)."""

    settings = providers.Dependency(instance_of=BrokerSettings)
    properties = providers.Dependency(instance_of=dict, default={})
    client = providers.Singleton(kafka_client_config, settings, properties)
    topic_writer = providers.Resource(
        _kafka_writer, client=client, delivery_timeout=settings.provided.delivery_timeout_seconds
    )
    request_source = providers.Factory(
        KafkaRequestSource,
        client=client,
        topic=settings.provided.request_topic,
        group=settings.provided.group,
        unavailable_after=settings.provided.unavailable_after_seconds,
        session_timeout=settings.provided.session_timeout_seconds,
        group_protocol=settings.provided.effective_group_protocol,
    )
    request_producer = providers.Singleton(KafkaRequestProducer, client=client)
    topic_admin = providers.Singleton(KafkaTopicAdmin, client=client)


class MemoryBroker(containers.DeclarativeContainer):
    """The in-process broker: same provider names as `KafkaBroker`."""

    settings = providers.Dependency(instance_of=BrokerSettings)
    broker = providers.Singleton(InMemoryBroker, default_partitions=settings.provided.partitions)
    topic_writer = providers.Singleton(InMemoryTopicWriter, broker)
    request_source = providers.Factory(
        InMemoryRequestSource,
        broker=broker,
        topic=settings.provided.request_topic,
        group=settings.provided.group,
    )
    request_producer = providers.Singleton(InMemoryRequestProducer, broker)
    topic_admin = providers.Singleton(InMemoryTopicAdmin, broker)


# -------------------------------------------------------------------------------- database families
class SqlDatabase(containers.DeclarativeContainer):
    """SQLite or PostgreSQL through SQLAlchemy."""

    settings = providers.Dependency(instance_of=DatabaseSettings)
    identity = providers.Dependency(instance_of=AuditIdentity, default=AuditIdentity())
    engine = providers.Resource(
        _engine,
        url=settings.provided.url_value,
        pool_size=settings.provided.pool_size,
        statement_timeout=settings.provided.statement_timeout_seconds,
        lock_timeout=settings.provided.lock_timeout_seconds,
    )
    plan = providers.Singleton(DeletionPlan.parse, settings.provided.deletion_plan)
    record_store = providers.Singleton(SqlRecordStore, engine=engine, plan=plan, identity=identity)
    create_demo_tables = providers.Callable(create_demo_tables, engine)


class MemoryDatabase(containers.DeclarativeContainer):
    """Rows counted in memory: same provider names as `SqlDatabase` where it matters."""

    settings = providers.Dependency(instance_of=DatabaseSettings)
    identity = providers.Dependency(instance_of=AuditIdentity, default=AuditIdentity())
    record_store = providers.Singleton(
        InMemoryRecordStore, seconds_per_row=settings.provided.seconds_per_row, identity=identity
    )
    create_demo_tables: providers.Provider[None] = providers.Object(None)  # nothing to create


# ------------------------------------------------------------------------------ entrypoint containers
class _Common(containers.DeclarativeContainer):
    """What every command's container holds: the chosen families and the adapters built on them."""

    settings = providers.Dependency(instance_of=Settings)
    broker = providers.DependenciesContainer()
    database = providers.DependenciesContainer()

    record_store = database.record_store
    completion_publisher = providers.Singleton(
        TopicCompletionPublisher,
        writer=broker.topic_writer,
        completion_topic=settings.provided.broker.completion_topic,
        failure_topic=settings.provided.broker.failure_topic,
    )

    prometheus = providers.Singleton(PrometheusEvents)
    events = providers.Singleton(
        FanOutEvents,
        providers.List(
            providers.Singleton(
                LoggingEvents,
                json_lines=settings.provided.worker.json_logs,
                hash_key=settings.provided.worker.hash_key,
            ),
            prometheus,
        ),
    )

    resonate = providers.Singleton(
        build_resonate,
        settings.provided.resonate.mode,
        store_url=settings.provided.resonate.store_url,
        poll_url=settings.provided.resonate.effective_poll_url,
        group=settings.provided.resonate.group,
        ttl=settings.provided.resonate.ttl,
        workers=settings.provided.resonate.workers,
        request_retries=settings.provided.resonate.request_retries,
        auth=settings.provided.resonate.auth,
        redact_log_args=settings.provided.worker.hashes_record_ids,
    )
    runtime = providers.Resource(
        _runtime,
        resonate=resonate,
        store=record_store,
        publisher=completion_publisher,
        params=providers.Singleton(
            WorkflowParams,
            batch_size=settings.provided.workflow.batch_size,
            pause_seconds=settings.provided.workflow.pause_seconds,
            step_seconds=settings.provided.workflow.step_seconds,
        ),
        step_retry=providers.Singleton(
            StepRetry,
            delay=settings.provided.workflow.step_retry_delay,
            max_delay=settings.provided.workflow.step_retry_max_delay,
        ),
        events=events,
        namespace=settings.provided.broker.group,
        target=settings.provided.resonate.recovery_target,
    )


class ProducerContainer(_Common):
    """`produce`: write deletion requests in the reference example's format."""

    request_producer = _Common.broker.request_producer


class AdminContainer(_Common):
    """`setup-topics`, `seed`, `status`: operator commands."""

    topic_admin = _Common.broker.topic_admin
    create_demo_tables = _Common.database.create_demo_tables


class WorkerContainer(_Common):
    """`worker`: consume requests and hand each off to a durable workflow."""

    request_source = _Common.broker.request_source
    dead_letter_sink = providers.Singleton(
        TopicDeadLetterSink,
        writer=_Common.broker.topic_writer,
        topic=_Common.settings.provided.broker.dead_letter_topic,
        truncate_to=MAX_REQUEST_BYTES,
    )
    handoff = providers.Factory(
        HandOff,
        source=request_source,
        starter=_Common.runtime,
        dead_letters=dead_letter_sink,
        max_in_flight=_Common.settings.provided.worker.max_in_flight,
        concurrency=_Common.settings.provided.worker.handoff_concurrency,
        budget=providers.Factory(
            RetryBudget, deadline_seconds=_Common.settings.provided.worker.handoff_retry_seconds
        ),
        events=_Common.events,
    )


class DemoContainer(WorkerContainer):
    """`demo`: the worker, a producer and the admin commands in one process on embedded adapters."""

    request_producer = _Common.broker.request_producer
    topic_admin = _Common.broker.topic_admin
    create_demo_tables = _Common.database.create_demo_tables


class DashboardContainer(containers.DeclarativeContainer):
    """`dashboard`: the web page on deletions in flight and their outcomes, read from the ledger.

    Not a `_Common`: it holds no producer, no Resonate runtime, nothing that could publish, claim
    a workflow or write; only the database family's engine and store (to count rows left)."""

    settings = providers.Dependency(instance_of=Settings)
    broker = providers.DependenciesContainer()  # given by bootstrap like every family; never used
    database = providers.DependenciesContainer()

    engine = database.engine
    rows_left = providers.Singleton(
        RowsLeftCounter,
        count=database.record_store.provided.count_rows,
        ttl=settings.provided.dashboard.count_cache_seconds,
    )
    overview = providers.Singleton(
        DashboardOverview,
        engine=engine,
        rows_left=rows_left,
        limits=providers.Singleton(
            OverviewLimits,
            in_flight=settings.provided.dashboard.in_flight_limit,
            recent=settings.provided.dashboard.recent_limit,
            running_seconds=settings.provided.dashboard.running_seconds,
            refresh_seconds=settings.provided.dashboard.refresh_seconds,
        ),
        worker_urls=settings.provided.dashboard.worker_url_list,
        pending=providers.Singleton(_pending_requests, settings),
    )
    app = providers.Singleton(
        DashboardApp,
        overview=overview,
        history=providers.Factory(
            functools.partial, history_document, database.record_store.provided.find_history
        ),
    )
    server = providers.Singleton(DashboardServer, app)
