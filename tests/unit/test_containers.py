"""The composition root: every entrypoint container, for every family choice, resolves every provider;
and a test swaps an adapter by argument."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from dependency_injector import providers

from record_deleter.adapters.memory_store import InMemoryRecordStore
from record_deleter.domain.publishing import TopicCompletionPublisher
from record_deleter.entrypoints.bootstrap import bootstrap
from record_deleter.entrypoints.containers import (
    AdminContainer,
    DashboardContainer,
    DemoContainer,
    ProducerContainer,
    WorkerContainer,
    kafka_client_config,
)
from record_deleter.entrypoints.settings import Settings, load_settings

pytestmark = pytest.mark.unit

CONTAINERS = [WorkerContainer, ProducerContainer, AdminContainer, DemoContainer]
KINDS = ["kafka", "redpanda", "memory"]
DATABASES = ["memory", "sqlite"]
MODES = ["local", "remote"]


def _settings(kind: str, database: str, mode: str, tmp_path: Path) -> Settings:
    url = "memory" if database == "memory" else f"sqlite:///{tmp_path / 'smoke.db'}"
    return load_settings(
        None,
        {
            "broker": {
                "kind": kind,
                "sasl_username": "u" if kind == "redpanda" else None,
                "sasl_password": "p" if kind == "redpanda" else None,
            },
            "database": {"url": url},
            "resonate": {"mode": mode},
        },
    )


@pytest.mark.parametrize(("kind", "database", "mode"), list(itertools.product(KINDS, DATABASES, MODES)))
@pytest.mark.parametrize("container_cls", CONTAINERS, ids=lambda c: c.__name__)
def test_container_resolves_every_provider(container_cls, kind, database, mode, tmp_path) -> None:
    container = bootstrap(container_cls, _settings(kind, database, mode, tmp_path))
    resolved = {}
    try:
        for family in ("broker", "database"):
            for name, provider in getattr(container, family).providers.items():
                resolved[f"{family}.{name}"] = provider()
        for name, provider in container.providers.items():
            if isinstance(provider, providers.DependenciesContainer):
                continue
            resolved[name] = provider()
    finally:
        source = resolved.get("broker.request_source")
        if source is not None:
            source.close() if kind == "memory" else source._consumer.close()
        container.shutdown_resources()
    assert resolved["record_store"].__class__.__name__ == (
        "InMemoryRecordStore" if database == "memory" else "SqlRecordStore"
    )
    assert isinstance(resolved["completion_publisher"], TopicCompletionPublisher)
    writer = "InMemoryTopicWriter" if kind == "memory" else "KafkaTopicWriter"
    assert resolved["broker.topic_writer"].__class__.__name__ == writer


def test_redpanda_is_a_connection_profile_of_the_kafka_family(tmp_path) -> None:
    settings = _settings("redpanda", "memory", "local", tmp_path)
    conf = kafka_client_config(settings.broker).to_confluent()
    assert conf["sasl.mechanism"] == "SCRAM-SHA-256"
    assert conf["security.protocol"] == "SASL_SSL"
    container = bootstrap(ProducerContainer, settings)
    assert "client" in container.broker.providers  # the Kafka family (the memory one has none)


def test_an_adapter_is_swapped_by_argument(tmp_path) -> None:
    fake = InMemoryRecordStore()
    container = bootstrap(
        WorkerContainer, _settings("memory", "sqlite", "local", tmp_path), record_store=fake
    )
    try:
        assert container.record_store() is fake
    finally:
        container.shutdown_resources()


def test_an_unknown_override_names_the_providers_there_are(tmp_path) -> None:
    with pytest.raises(TypeError, match=r"no provider .recordstore.*record_store"):
        bootstrap(WorkerContainer, _settings("memory", "memory", "local", tmp_path), recordstore=object())


def test_the_dashboard_container_resolves_every_provider(tmp_path) -> None:
    container = bootstrap(DashboardContainer, _settings("kafka", "sqlite", "remote", tmp_path))
    try:
        for provider in container.providers.values():
            if not isinstance(provider, providers.DependenciesContainer):
                provider()
        assert container.server().__class__.__name__ == "DashboardServer"
        # read-only by construction: nothing that publishes, claims workflows or deletes
        assert not {"runtime", "resonate", "completion_publisher", "handoff"} & set(container.providers)
    finally:
        container.shutdown_resources()
