"""Redpanda: the Kafka protocol with its own connection profile.

Redpanda Cloud (and the reference example) authenticate with SASL/SCRAM over TLS; a local
Redpanda (docker compose) listens in plaintext. The profile fills those defaults; everything
else is the Kafka adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .kafka import KafkaClientConfig

REDPANDA_DEFAULT_MECHANISM = "SCRAM-SHA-256"


def redpanda_client_config(
    bootstrap_servers: str,
    *,
    sasl_username: str | None = None,
    sasl_password: str | None = None,
    sasl_mechanism: str | None = None,
    security_protocol: str | None = None,
    ssl_ca_location: str | None = None,
    ssl_certificate_location: str | None = None,
    ssl_key_location: str | None = None,
    ssl_key_password: str | None = None,
    client_id: str = "record-deleter",
    extra: Mapping[str, Any] | None = None,
) -> KafkaClientConfig:
    """With credentials: SASL_SSL + SCRAM-SHA-256 unless told otherwise; without: PLAINTEXT."""
    with_credentials = sasl_username is not None
    return KafkaClientConfig(
        bootstrap_servers=bootstrap_servers,
        security_protocol=security_protocol or ("SASL_SSL" if with_credentials else "PLAINTEXT"),
        sasl_mechanism=sasl_mechanism or (REDPANDA_DEFAULT_MECHANISM if with_credentials else None),
        sasl_username=sasl_username,
        sasl_password=sasl_password,
        ssl_ca_location=ssl_ca_location,
        ssl_certificate_location=ssl_certificate_location,
        ssl_key_location=ssl_key_location,
        ssl_key_password=ssl_key_password,
        client_id=client_id,
        extra=dict(extra or {}),
    )
