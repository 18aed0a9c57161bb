"""Composition roots: every entrypoint container, every selector value, every public provider."""

from __future__ import annotations

import itertools

import pytest
from dependency_injector import providers

from record_deleter.entrypoints.containers import (
    AdminContainer,
    DemoContainer,
    ProducerContainer,
    WorkerContainer,
)
from record_deleter.entrypoints.settings import load_settings

pytestmark = pytest.mark.unit

CONTAINERS = [WorkerContainer, ProducerContainer, AdminContainer, DemoContainer]
KINDS = ["kafka", "redpanda", "memory"]
DATABASES = ["memory", "sqlite"]
MODES = ["local", "remote"]


def _config(kind: str, database: str, mode: str, tmp_path) -> dict:
    url = "memory" if database == "memory" else f"sqlite:///{tmp_path / 'smoke.db'}"
    settings = load_settings(
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
    return settings.container_config()


@pytest.mark.parametrize(("kind", "database", "mode"), list(itertools.product(KINDS, DATABASES, MODES)))
@pytest.mark.parametrize("container_cls", CONTAINERS, ids=lambda c: c.__name__)
def test_container_resolves_every_provider(container_cls, kind, database, mode, tmp_path) -> None:
    container = container_cls()
    container.config.from_dict(_config(kind, database, mode, tmp_path))
    resolved = {}
    try:
        for name, provider in container.adapters.providers.items():
            if name.startswith("_") or isinstance(provider, providers.Configuration):
                continue
            resolved[name] = provider()
        for name, provider in container.providers.items():
            if name in ("adapters", "config"):
                continue
            resolved[name] = provider()
    finally:
        source = resolved.get("request_source")
        if source is not None and hasattr(source, "close"):
            source.close() if kind == "memory" else source._consumer.close()
        container.shutdown_resources()
    assert resolved["record_store"].__class__.__name__ == (
        "InMemoryRecordStore" if database == "memory" else "SqlRecordStore"
    )
    expected = {
        "kafka": "KafkaCompletionPublisher",
        "redpanda": "KafkaCompletionPublisher",
        "memory": "InMemoryCompletionPublisher",
    }
    assert resolved["completion_publisher"].__class__.__name__ == expected[kind]
    if kind == "redpanda":
        conf = resolved["kafka_client"].to_confluent()
        assert conf["sasl.mechanism"] == "SCRAM-SHA-256"
        assert conf["security.protocol"] == "SASL_SSL"
