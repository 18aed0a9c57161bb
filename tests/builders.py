"""Adapters built for tests with the application's own defaults (read from the settings models,
so a default is still written in one place) and whatever a test needs to change."""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings
from sqlalchemy import Engine

from record_deleter.adapters.kafka import KafkaClientConfig, KafkaRequestSource
from record_deleter.adapters.memory_broker import InMemoryBroker, InMemoryTopicWriter
from record_deleter.adapters.resonate_runtime import ResonateRuntime, StepRetry, build_resonate
from record_deleter.adapters.sql_engine import make_engine
from record_deleter.adapters.sql_schema import DEMO_DELETION_PLAN
from record_deleter.adapters.sql_store import DeletionPlan, SqlRecordStore
from record_deleter.domain.events import Events, NoEvents
from record_deleter.domain.handoff import RetryBudget
from record_deleter.domain.messages import MAX_REQUEST_BYTES
from record_deleter.domain.model import WorkflowParams
from record_deleter.domain.ports import CompletionPublisher, RecordStore, TopicWriter
from record_deleter.domain.publishing import TopicCompletionPublisher, TopicDeadLetterSink
from record_deleter.entrypoints.settings import (
    BrokerSettings,
    DatabaseSettings,
    ResonateSettings,
    WorkerSettings,
    WorkflowSettings,
)


def _settings[S: BaseSettings](model: type[S], **changes: Any) -> S:
    """A settings section from its declared defaults and `changes` only: never from the environment
    (the test environment exports the provisioned services' endpoints under the same names)."""
    values = {name: field.default for name, field in model.model_fields.items()}
    return model.model_construct(**{**values, **changes})


def workflow_params(**changes: Any) -> WorkflowParams:
    w = _settings(WorkflowSettings, **changes)
    return WorkflowParams(w.batch_size, w.pause_seconds, w.step_seconds)


def step_retry(**changes: Any) -> StepRetry:
    names = {"delay": "step_retry_delay", "max_delay": "step_retry_max_delay"}
    w = _settings(WorkflowSettings, **{names[k]: v for k, v in changes.items()})
    return StepRetry(w.step_retry_delay, w.step_retry_max_delay)


def resonate(
    mode: str = "local",
    *,
    host: str | None = None,
    store_port: str | None = None,
    redact_log_args: bool = False,
    **changes: Any,
) -> Any:
    """A Resonate client; `url` (or `host` + `store_port`), `message_source_port`, `group`, ... as the
    settings name them."""
    if host is not None or store_port is not None:
        changes["url"] = f"{host or 'http://127.0.0.1'}:{store_port}"
    r = _settings(ResonateSettings, mode=mode, **changes)
    return build_resonate(
        r.mode,
        store_url=r.store_url,
        poll_url=r.effective_poll_url,
        group=r.group,
        ttl=r.ttl,
        workers=r.workers,
        request_retries=r.request_retries,
        auth=r.auth,
        redact_log_args=redact_log_args,
    )


def runtime(
    client: Any,
    store: RecordStore,
    publisher: CompletionPublisher,
    *,
    params: WorkflowParams | None = None,
    retry: StepRetry | None = None,
    events: Events | None = None,
    namespace: str = "test",
    target: str | None = None,
) -> ResonateRuntime:
    return ResonateRuntime(
        client,
        store,
        publisher,
        params=params or workflow_params(),
        step_retry=retry or step_retry(),
        events=events or NoEvents(),
        namespace=namespace,
        target=target,
    )


def publisher(
    writer: TopicWriter | InMemoryBroker, completions: str, failures: str
) -> TopicCompletionPublisher:
    if isinstance(writer, InMemoryBroker):
        writer = InMemoryTopicWriter(writer)
    return TopicCompletionPublisher(writer, completions, failures)


def dead_letters(writer: TopicWriter | InMemoryBroker, topic: str) -> TopicDeadLetterSink:
    if isinstance(writer, InMemoryBroker):
        writer = InMemoryTopicWriter(writer)
    return TopicDeadLetterSink(writer, topic, truncate_to=MAX_REQUEST_BYTES)


def engine(url: str, pool_size: int | None = None) -> Engine:
    return make_engine(url, pool_size=pool_size or _settings(DatabaseSettings).pool_size)


def demo_plan() -> DeletionPlan:
    return DeletionPlan.parse(DEMO_DELETION_PLAN)


def sql_store(url_or_engine: str | Engine, **kwargs: Any) -> SqlRecordStore:
    e = engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    return SqlRecordStore(e, demo_plan(), **kwargs)


def kafka_source(client: KafkaClientConfig, topic: str, group: str) -> KafkaRequestSource:
    b = _settings(BrokerSettings)
    return KafkaRequestSource(
        client,
        topic,
        group,
        unavailable_after=b.unavailable_after_seconds,
        session_timeout=b.session_timeout_seconds,
        group_protocol=b.effective_group_protocol,
    )


def budget() -> RetryBudget:
    return RetryBudget(deadline_seconds=_settings(WorkerSettings).handoff_retry_seconds)
