"""Composition roots: one dependency-injector container per entrypoint.

`Adapters` chooses implementations with Selectors on configuration values (broker.kind,
database.kind, resonate.mode); the entrypoint containers add what their command needs. Every
provider can be overridden in a test (`container.adapters.record_store.override(fake)`).
"""

from __future__ import annotations

from collections.abc import Iterator

from dependency_injector import containers, providers
from sqlalchemy import Engine

from ..adapters.kafka import (
    ConfirmedProducer,
    KafkaClientConfig,
    KafkaCompletionPublisher,
    KafkaDeadLetterSink,
    KafkaRequestProducer,
    KafkaRequestSource,
    KafkaTopicAdmin,
)
from ..adapters.memory_broker import (
    InMemoryBroker,
    InMemoryCompletionPublisher,
    InMemoryDeadLetterSink,
    InMemoryRequestProducer,
    InMemoryRequestSource,
    InMemoryTopicAdmin,
)
from ..adapters.memory_store import InMemoryRecordStore
from ..adapters.observability import FanOutEvents, LoggingEvents, PrometheusEvents
from ..adapters.redpanda import redpanda_client_config
from ..adapters.resonate_runtime import ResonateRuntime, StepRetry, build_resonate
from ..adapters.sql_engine import make_engine
from ..adapters.sql_store import DeletionPlan, SqlRecordStore
from ..domain.handoff import HandOff, RetryBudget
from ..domain.model import WorkflowParams


def _engine(url: str, pool_size: int) -> Iterator[Engine]:
    engine = make_engine(url, pool_size=pool_size)
    yield engine
    engine.dispose()


def _producer(client: KafkaClientConfig, delivery_timeout: float) -> Iterator[ConfirmedProducer]:
    producer = ConfirmedProducer(client, delivery_timeout=delivery_timeout)
    yield producer
    producer.close()


def _runtime(**kwargs: object) -> Iterator[ResonateRuntime]:
    runtime = ResonateRuntime(**kwargs)  # type: ignore[arg-type]
    yield runtime
    runtime.stop()


class Adapters(containers.DeclarativeContainer):
    """Every adapter, chosen by configuration."""

    config = providers.Configuration()

    # --- broker -------------------------------------------------------------------------------
    memory_broker = providers.Singleton(InMemoryBroker, default_partitions=config.broker.partitions)

    kafka_client = providers.Selector(
        config.broker.kind,
        kafka=providers.Singleton(
            KafkaClientConfig,
            bootstrap_servers=config.broker.bootstrap_servers,
            security_protocol=config.broker.security_protocol.as_(lambda v: v or "PLAINTEXT"),
            sasl_mechanism=config.broker.sasl_mechanism,
            sasl_username=config.broker.sasl_username,
            sasl_password=config.broker.sasl_password,
            ssl_ca_location=config.broker.ssl_ca_location,
        ),
        redpanda=providers.Singleton(
            redpanda_client_config,
            bootstrap_servers=config.broker.bootstrap_servers,
            sasl_username=config.broker.sasl_username,
            sasl_password=config.broker.sasl_password,
            sasl_mechanism=config.broker.sasl_mechanism,
            security_protocol=config.broker.security_protocol,
            ssl_ca_location=config.broker.ssl_ca_location,
        ),
        memory=providers.Object(None),
    )

    _confirmed_producer = providers.Resource(
        _producer, client=kafka_client, delivery_timeout=config.broker.delivery_timeout_seconds
    )

    _kafka_publisher = providers.Singleton(
        KafkaCompletionPublisher,
        producer=_confirmed_producer,
        completion_topic=config.broker.completion_topic,
        failure_topic=config.broker.failure_topic,
    )
    completion_publisher = providers.Selector(
        config.broker.kind,
        kafka=_kafka_publisher,
        redpanda=_kafka_publisher,
        memory=providers.Singleton(
            InMemoryCompletionPublisher,
            broker=memory_broker,
            completion_topic=config.broker.completion_topic,
            failure_topic=config.broker.failure_topic,
        ),
    )

    _kafka_dead_letters = providers.Singleton(
        KafkaDeadLetterSink, producer=_confirmed_producer, topic=config.broker.dead_letter_topic
    )
    dead_letter_sink = providers.Selector(
        config.broker.kind,
        kafka=_kafka_dead_letters,
        redpanda=_kafka_dead_letters,
        memory=providers.Singleton(
            InMemoryDeadLetterSink, broker=memory_broker, topic=config.broker.dead_letter_topic
        ),
    )

    _kafka_source = providers.Factory(
        KafkaRequestSource,
        client=kafka_client,
        topic=config.broker.request_topic,
        group=config.broker.group,
        unavailable_after=config.broker.unavailable_after_seconds,
        session_timeout=config.broker.session_timeout_seconds,
    )
    request_source = providers.Selector(
        config.broker.kind,
        kafka=_kafka_source,
        redpanda=_kafka_source,
        memory=providers.Factory(
            InMemoryRequestSource,
            broker=memory_broker,
            topic=config.broker.request_topic,
            group=config.broker.group,
        ),
    )

    _kafka_request_producer = providers.Singleton(KafkaRequestProducer, client=kafka_client)
    request_producer = providers.Selector(
        config.broker.kind,
        kafka=_kafka_request_producer,
        redpanda=_kafka_request_producer,
        memory=providers.Singleton(InMemoryRequestProducer, broker=memory_broker),
    )

    _kafka_admin = providers.Singleton(KafkaTopicAdmin, client=kafka_client)
    topic_admin = providers.Selector(
        config.broker.kind,
        kafka=_kafka_admin,
        redpanda=_kafka_admin,
        memory=providers.Singleton(InMemoryTopicAdmin, broker=memory_broker),
    )

    # --- database -----------------------------------------------------------------------------
    _sql_engine = providers.Resource(_engine, url=config.database.url, pool_size=config.database.pool_size)
    deletion_plan = providers.Singleton(DeletionPlan.parse, config.database.deletion_plan)
    record_store = providers.Selector(
        config.database.kind,
        sql=providers.Singleton(SqlRecordStore, engine=_sql_engine, plan=deletion_plan),
        memory=providers.Singleton(InMemoryRecordStore, seconds_per_row=config.database.seconds_per_row),
    )

    # --- observability ------------------------------------------------------------------------
    prometheus = providers.Singleton(PrometheusEvents)
    events = providers.Singleton(
        FanOutEvents,
        providers.List(
            providers.Singleton(
                LoggingEvents, json_lines=config.worker.log_format.as_(lambda v: v == "json")
            ),
            prometheus,
        ),
    )

    # --- durable runtime ----------------------------------------------------------------------
    resonate = providers.Singleton(
        build_resonate,
        mode=config.resonate.mode,
        host=config.resonate.host,
        store_port=config.resonate.store_port,
        message_source_port=config.resonate.message_source_port.as_(str),
        group=config.resonate.group,
        ttl=config.resonate.ttl,
        workers=config.resonate.workers,
        request_retries=config.resonate.request_retries,
        auth=config.resonate.auth,
    )
    workflow_params = providers.Singleton(
        WorkflowParams,
        batch_size=config.workflow.batch_size,
        pause_seconds=config.workflow.pause_seconds,
        step_seconds=config.workflow.step_seconds,
    )
    step_retry = providers.Singleton(
        StepRetry,
        max_attempts=config.workflow.step_max_attempts,
        delay=config.workflow.step_retry_delay,
        max_delay=config.workflow.step_retry_max_delay,
    )
    runtime = providers.Resource(
        _runtime,
        resonate=resonate,
        store=record_store,
        publisher=completion_publisher,
        params=workflow_params,
        step_retry=step_retry,
        events=events,
        target=config.resonate.recovery_target,
    )


class WorkerContainer(containers.DeclarativeContainer):
    """`worker`: consume requests and hand each off to a durable workflow."""

    config = providers.Configuration()
    adapters = providers.Container(Adapters, config=config)
    handoff = providers.Factory(
        HandOff,
        source=adapters.request_source,
        starter=adapters.runtime,
        dead_letters=adapters.dead_letter_sink,
        max_in_flight=config.worker.max_in_flight,
        concurrency=config.worker.handoff_concurrency,
        budget=providers.Factory(RetryBudget, deadline_seconds=config.worker.handoff_retry_seconds),
        events=adapters.events,
    )


class ProducerContainer(containers.DeclarativeContainer):
    """`produce`: write deletion requests in the reference example's format."""

    config = providers.Configuration()
    adapters = providers.Container(Adapters, config=config)
    request_producer = adapters.request_producer


class AdminContainer(containers.DeclarativeContainer):
    """`setup-topics`, `seed`, `status`, `db upgrade`: operator commands."""

    config = providers.Configuration()
    adapters = providers.Container(Adapters, config=config)
    topic_admin = adapters.topic_admin
    record_store = adapters.record_store
    runtime = adapters.runtime


class DemoContainer(WorkerContainer):
    """`demo`: the worker plus producer, admin and store, all in one process on embedded adapters."""

    request_producer = WorkerContainer.adapters.request_producer
    topic_admin = WorkerContainer.adapters.topic_admin
    record_store = WorkerContainer.adapters.record_store
    runtime = WorkerContainer.adapters.runtime
