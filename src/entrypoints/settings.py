"""Typed settings, validated at start-up from environment variables and an optional TOML file.

Each concern has its own model and environment prefix (BROKER_, DATABASE_, RESONATE_,
WORKFLOW_, WORKER_, AUDIT_, DASHBOARD_). A TOML file (`--config FILE` or RECORD_DELETER_CONFIG) may
hold the same keys in sections [broker], [database], ...; environment variables win over the file.

Any setting can also come from a file, as container platforms mount secrets: `NAME_FILE` (e.g.
DATABASE_URL_FILE) names a file holding NAME's value, and RECORD_DELETER_SECRETS_DIR a directory
of files named after the settings (`DATABASE_URL`, `BROKER_SASL_PASSWORD`, ...). The order:
NAME, then NAME_FILE (both set is an error), then the TOML file, then the secrets directory.
Secret values (SECRET_SETTINGS) are SecretStr: masked in reprs, errors, logs and `config show`.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url

from ..adapters.evidence_chain import AuditIdentity
from ..adapters.kafka import property_problem
from ..adapters.sql_schema import DEMO_DELETION_PLAN
from ..adapters.sql_store import DeletionPlan


class _Concern(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", validate_default=True, validate_assignment=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings, file_secret_settings)


class BrokerSettings(_Concern):
    model_config = SettingsConfigDict(env_prefix="BROKER_", extra="forbid")

    kind: Literal["kafka", "redpanda", "memory"] = "kafka"
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = None
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    # mTLS: the client's certificate (PEM) and its private key (PEM; `ssl_key_password` if encrypted)
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    # Any other librdkafka property, for every client (consumer, producer, admin): a file of
    # `name=value` lines, and BROKER_RDKAFKA_<NAME> variables (`_` -> `.`, lower case), which win.
    # The worker's own delivery guarantees (group.id, offset storing and commits, idempotence,
    # acks) are set after them and cannot be overridden.
    properties_file: str | None = None
    request_topic: str = "records_to_be_deleted"
    completion_topic: str = "records_that_were_deleted"
    failure_topic: str = "records_that_failed_deletion"
    dead_letter_topic: str = "records_to_be_deleted.dlq"
    group: str = "record-deleter"
    partitions: int = Field(default=3, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=32)
    unavailable_after_seconds: float = Field(default=60.0, gt=0, le=86_400)
    # How long the group waits for a member that stopped heartbeating (a SIGKILLed worker) before
    # its partitions move. librdkafka's and Kafka's 45 s default stalls them that long after every
    # crash (RELIABILITY.md, F6). `classic`: the consumer's session.timeout.ms (the broker's floor
    # is group.min.session.timeout.ms, 6 s). `consumer` (KIP-848): the broker keeps it per group;
    # the worker sets its group's `consumer.session.timeout.ms` at start and `setup-topics` does too
    # (the broker's floor is group.consumer.min.session.timeout.ms, 45 s unless lowered).
    session_timeout_seconds: float = Field(default=6.0, ge=1, le=3600)
    # The consumer group protocol. `consumer` (KIP-848, Kafka 4): the broker moves partitions one
    # member at a time, so a worker joining or dying never stops the others, and a backlog spreads
    # over a worker added to drain it. `classic`: cooperative-sticky rebalances (also incremental),
    # for brokers without KIP-848 (Kafka < 4, Redpanda).
    # Unset: `consumer` for BROKER_KIND=kafka, `classic` for redpanda.
    group_protocol: Literal["consumer", "classic"] | None = None
    delivery_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("request_topic", "completion_topic", "failure_topic", "dead_letter_topic", "group")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or len(v) > 249 or not all(c.isalnum() or c in "._-" for c in v):
            raise ValueError("must be 1-249 characters of letters, digits, '.', '_' or '-'")
        return v

    @property
    def has_credentials(self) -> bool:
        return self.sasl_username is not None or self.sasl_password is not None

    @property
    def effective_security_protocol(self) -> str:
        """Unset: SASL_SSL with credentials (never send a password in clear by default), else
        PLAINTEXT."""
        return self.security_protocol or ("SASL_SSL" if self.has_credentials else "PLAINTEXT")

    @property
    def effective_sasl_mechanism(self) -> str | None:
        """Unset: SCRAM-SHA-256 for redpanda with credentials (its default); kafka has none."""
        if self.sasl_mechanism or self.kind != "redpanda" or not self.has_credentials:
            return self.sasl_mechanism
        return "SCRAM-SHA-256"

    @property
    def effective_group_protocol(self) -> str:
        return self.group_protocol or ("classic" if self.kind == "redpanda" else "consumer")

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, v: str) -> str:
        for part in v.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("must be a comma-separated list of host:port")
        return v


RDKAFKA_PREFIX = "BROKER_RDKAFKA_"


def librdkafka_properties(broker: BrokerSettings, environ: Mapping[str, str]) -> dict[str, str]:
    """The pass-through librdkafka properties: BROKER_PROPERTIES_FILE, then BROKER_RDKAFKA_*."""
    props: dict[str, str] = {}
    if broker.properties_file:
        path = Path(broker.properties_file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SettingsError(
                f"invalid setting BROKER_PROPERTIES_FILE = {str(path)!r}: cannot read it ({exc.strerror})"
            ) from None
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith(("#", "!")):
                continue
            name, sep, value = line.partition("=")
            if not sep or not name.strip():
                raise SettingsError(
                    f"invalid setting BROKER_PROPERTIES_FILE = {str(path)!r}: line {number} is not name=value"
                )
            props[name.strip()] = value.strip()
    for variable, value in sorted(environ.items()):
        if variable.startswith(RDKAFKA_PREFIX) and len(variable) > len(RDKAFKA_PREFIX):
            props[rdkafka_property_name(variable)] = value
    problem = property_problem(props) if broker.kind != "memory" else None
    if problem is not None:
        raise SettingsError(
            f"invalid librdkafka property (BROKER_PROPERTIES_FILE or {RDKAFKA_PREFIX}*): {problem}"
        )
    return props


def rdkafka_property_name(variable: str) -> str:
    """BROKER_RDKAFKA_SOCKET_KEEPALIVE_ENABLE -> socket.keepalive.enable; `__` stands for a `_`
    (BROKER_RDKAFKA_LOG__LEVEL -> log_level)."""
    name = variable[len(RDKAFKA_PREFIX) :].lower()
    return ".".join(part.replace("\0", "_") for part in name.replace("__", "\0").split("_"))


def check_broker(broker: BrokerSettings) -> None:
    """Settings that are valid one by one but not together: one line each (SettingsError)."""
    if broker.kind == "memory":
        return
    protocol = broker.effective_security_protocol
    sasl = protocol.startswith("SASL_")
    tls = protocol.endswith("SSL")
    if (broker.sasl_username is None) != (broker.sasl_password is None):
        given, missing = (
            ("BROKER_SASL_USERNAME", "BROKER_SASL_PASSWORD")
            if broker.sasl_password is None
            else ("BROKER_SASL_PASSWORD", "BROKER_SASL_USERNAME")
        )
        raise SettingsError(f"invalid broker settings: {given} is set but {missing} is not; set both")
    if broker.has_credentials and not sasl:
        raise SettingsError(
            f"invalid broker settings: SASL credentials are set but BROKER_SECURITY_PROTOCOL = {protocol} "
            "would ignore them; use SASL_SSL (or SASL_PLAINTEXT), or unset the credentials"
        )
    if sasl and not broker.has_credentials:
        raise SettingsError(
            f"invalid broker settings: BROKER_SECURITY_PROTOCOL = {protocol} needs BROKER_SASL_USERNAME "
            "and BROKER_SASL_PASSWORD"
        )
    if sasl and broker.effective_sasl_mechanism is None:
        raise SettingsError(
            "invalid broker settings: SASL credentials are set but BROKER_SASL_MECHANISM is not; "
            "set it to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (whichever the brokers enable)"
        )
    if broker.sasl_mechanism and not sasl:
        raise SettingsError(
            f"invalid broker settings: BROKER_SASL_MECHANISM = {broker.sasl_mechanism} but "
            f"BROKER_SECURITY_PROTOCOL = {protocol} does not use SASL"
        )
    files = {
        "BROKER_SSL_CA_LOCATION": broker.ssl_ca_location,
        "BROKER_SSL_CERTIFICATE_LOCATION": broker.ssl_certificate_location,
        "BROKER_SSL_KEY_LOCATION": broker.ssl_key_location,
    }
    for variable, location in files.items():
        if location is None:
            continue
        if not tls:
            raise SettingsError(
                f"invalid broker settings: {variable} is set but BROKER_SECURITY_PROTOCOL = {protocol} "
                "does not use TLS; use SSL or SASL_SSL"
            )
        if not Path(location).is_file():
            raise SettingsError(f"invalid setting {variable} = {location!r}: no such file")
    if (broker.ssl_certificate_location is None) != (broker.ssl_key_location is None):
        raise SettingsError(
            "invalid broker settings: a client certificate needs both BROKER_SSL_CERTIFICATE_LOCATION "
            "and BROKER_SSL_KEY_LOCATION"
        )
    if broker.ssl_key_password is not None and broker.ssl_key_location is None:
        raise SettingsError(
            "invalid broker settings: BROKER_SSL_KEY_PASSWORD is set but BROKER_SSL_KEY_LOCATION is not"
        )


def check_audit(audit: AuditSettings, worker: WorkerSettings) -> None:
    """Hashed ledger ids need the key the logs hash them with (one key: a log line and the ledger
    show the same HMAC)."""
    if audit.record_ids == "hashed" and not (worker.log_hash_key and worker.log_hash_key.get_secret_value()):
        raise SettingsError(
            "invalid audit settings: AUDIT_RECORD_IDS=hashed needs WORKER_LOG_HASH_KEY (or "
            "WORKER_LOG_HASH_KEY_FILE): the ledger stores HMAC-SHA256 of each id with that key"
        )


class DatabaseSettings(_Concern):
    model_config = SettingsConfigDict(env_prefix="DATABASE_", extra="forbid")

    url: SecretStr | None = Field(default=None, description="required by every command but demo")
    deletion_plan: str = DEMO_DELETION_PLAN
    pool_size: int = Field(default=8, ge=1, le=256)
    # PostgreSQL, every connection of the store: a statement (a batch's DELETE, a ledger write)
    # running longer, or waiting longer for another session's lock, fails as a transient error, so
    # the step backs off and retries instead of holding a step thread indefinitely. 0 = no limit.
    statement_timeout_seconds: float = Field(default=60.0, ge=0, le=86_400)
    lock_timeout_seconds: float = Field(default=10.0, ge=0, le=86_400)
    seconds_per_row: float = Field(default=0.0, ge=0, le=60, description="memory store only: simulated cost")

    @field_validator("url")
    @classmethod
    def _url(cls, v: SecretStr | None) -> SecretStr | None:
        # The messages never quote the value: it is a secret (its password, or a mistyped one).
        if v is None:
            return v
        url = v.get_secret_value()
        if url != "memory" and not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError("must be 'memory', a sqlite:/// URL or a postgresql+psycopg:// URL")
        if url != "memory":
            try:
                make_url(url)
            except Exception:
                raise ValueError("is not a valid database URL") from None
        return v

    @field_validator("deletion_plan")
    @classmethod
    def _plan(cls, v: str) -> str:
        DeletionPlan.parse(v)
        return v

    @property
    def url_value(self) -> str | None:
        """The URL itself, secret unwrapped: for the engine and migrations only."""
        return self.url.get_secret_value() if self.url is not None else None

    @property
    def kind(self) -> str:
        return "memory" if self.url_value == "memory" else "sql"

    @property
    def display_url(self) -> str:
        """The URL for messages and logs: its password masked and its query (which may carry one)
        dropped."""
        url = self.url_value
        if url is None or url == "memory":
            return str(url)
        # the password as "***"; the query dropped: it may carry one (?password=...)
        return make_url(url).set(query={}).render_as_string(hide_password=True)


class ResonateSettings(_Concern):
    model_config = SettingsConfigDict(env_prefix="RESONATE_", extra="forbid")

    mode: Literal["local", "remote"] = "remote"
    # The server's API, in full: scheme, host, port, path (a TLS proxy on a path works).
    url: str = "http://127.0.0.1:8001"
    # The long-poll endpoint, in full; unset: RESONATE_URL's scheme and host, port
    # RESONATE_MESSAGE_SOURCE_PORT (the server's own layout).
    poll_url: str | None = None
    message_source_port: int = Field(default=8002, ge=1, le=65535)
    group: str = "record-deleter"
    ttl: int = Field(default=10, ge=1, le=3600)
    # Threads running steps. A step mostly waits (a database commit, the broker's acknowledgement
    # of an answer), so more threads than cores pay: 8 ran 1.2x the SDK's default of one per core
    # end to end on 2 cores (BENCHMARKS.md); 16 no more than 8.
    workers: int = Field(default=8, ge=1, le=1024)
    request_retries: int = Field(default=30, ge=0, le=100_000)
    username: str | None = None
    password: SecretStr | None = None

    @field_validator("url", "poll_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            parts = urlsplit(v)
            port = parts.port
        except ValueError:
            port, parts = -1, None
        if parts is not None and (parts.username is not None or parts.password is not None):
            raise ValueError(
                "must not carry credentials (user:password@): set RESONATE_USERNAME and "
                "RESONATE_PASSWORD (or RESONATE_PASSWORD_FILE)"
            )
        if parts is None or port == -1 or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http(s)://host:port[/path] of the Resonate server")
        if parts.query or parts.fragment:
            raise ValueError(
                "must be http(s)://host:port[/path] of the Resonate server, without ?query or #fragment"
            )
        return v.rstrip("/")

    @property
    def store_url(self) -> str:
        """The API's base URL (the SDK appends /promises, /tasks, ...)."""
        return self.url

    @property
    def effective_poll_url(self) -> str:
        """The long-poll endpoint's base URL (the SDK appends /GROUP/ID)."""
        if self.poll_url is not None:
            return self.poll_url
        parts = urlsplit(self.url)
        host = parts.netloc.rpartition(":")[0] if parts.port is not None else parts.netloc
        return f"{parts.scheme}://{host}:{self.message_source_port}"

    @property
    def auth(self) -> tuple[str, str] | None:
        """Basic-auth credentials for the API and the poll endpoint (secret unwrapped here only)."""
        if self.username is None:
            return None
        return (self.username, self.password.get_secret_value() if self.password else "")

    @property
    def recovery_target(self) -> str | None:
        """Remote: recover a dead worker's workflows in the workers' own group (ResonateRuntime)."""
        return self.group if self.mode == "remote" else None


class WorkflowSettings(_Concern):
    model_config = SettingsConfigDict(env_prefix="WORKFLOW_", extra="forbid")

    batch_size: int = Field(default=1000, ge=1, le=1_000_000)
    pause_seconds: float = Field(default=0.0, ge=0, le=86_400)
    # With no pause, one delete step keeps deleting batches (each its own transaction) for up to
    # this long before it checkpoints: a checkpoint costs two server round trips (~5-15 ms), a
    # 1,000-row batch about 1-4 ms, so a checkpoint per batch spends most of the time on them.
    step_seconds: float = Field(default=0.5, ge=0, le=3600, description="0 = a checkpoint per batch")
    step_retry_delay: float = Field(default=1.0, ge=0, le=3600)
    step_retry_max_delay: float = Field(default=30.0, ge=0, le=3600)


class WorkerSettings(_Concern):
    model_config = SettingsConfigDict(env_prefix="WORKER_", extra="forbid")

    # Low enough that a worker added to drain a backlog gets its share (the rest waits in Kafka,
    # not in one worker's hands: BENCHMARKS.md, scale-out); high enough that that many very large
    # records at once still leave room for small ones.
    max_in_flight: int = Field(default=32, ge=0, le=1_000_000, description="0 = unbounded")
    handoff_concurrency: int = Field(default=8, ge=1, le=256)
    handoff_retry_seconds: float = Field(default=60.0, gt=0, le=86_400)
    metrics_port: int = Field(default=0, ge=0, le=65535, description="0 = no metrics endpoint")
    # 0.0.0.0 (or the pod's address) for a Prometheus outside the host or a kubelet's probes
    metrics_address: str = "127.0.0.1"
    # /healthz fails when the hand-off loop has not turned for this long (a stuck worker)
    liveness_seconds: float = Field(default=60.0, gt=0, le=3600)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Record ids are personal data (e-mail addresses, customer numbers): `hashed` logs each as the
    # first 16 hex digits of HMAC-SHA256(WORKER_LOG_HASH_KEY, id), the same for every line, so an
    # operator can follow one record without the log holding it.
    log_record_ids: Literal["clear", "hashed"] = "clear"
    log_hash_key: SecretStr | None = None
    # Who committed each batch and published each answer, in the evidence. Unset: <hostname>:<pid>.
    name: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _hash_key(self) -> WorkerSettings:
        if self.log_record_ids == "hashed" and not (
            self.log_hash_key and self.log_hash_key.get_secret_value()
        ):
            raise ValueError(
                "WORKER_LOG_RECORD_IDS=hashed needs WORKER_LOG_HASH_KEY (or WORKER_LOG_HASH_KEY_FILE): "
                "a secret key, so that the hashes cannot be recomputed from guessed ids"
            )
        return self

    @property
    def json_logs(self) -> bool:
        return self.log_format == "json"

    @property
    def hashes_record_ids(self) -> bool:
        return self.log_record_ids == "hashed"

    @property
    def hash_key(self) -> bytes | None:
        """The key record ids are hashed with in logs, or None to log them in clear."""
        if self.log_record_ids != "hashed" or self.log_hash_key is None:
            return None
        return self.log_hash_key.get_secret_value().encode()

    @property
    def identity(self) -> str:
        """This process's name in the evidence."""
        return self.name or f"{socket.gethostname()}:{os.getpid()}"


class AuditSettings(_Concern):
    model_config = SettingsConfigDict(env_prefix="AUDIT_", extra="forbid")

    # What `audit prune` keeps by default: closed attempts finished within this many days.
    retention_days: int = Field(default=365, ge=1, le=36_500)
    # `hashed`: every ledger table (attempts, requests, audit, answers) stores HMAC-SHA256 of the
    # record id with WORKER_LOG_HASH_KEY (64 hex digits; the logs show its first 16) instead of the
    # id. The deletes still use the id. Commands take the id and hash it.
    record_ids: Literal["clear", "hashed"] = "clear"
    # Makes the audit chain an HMAC: without it the chain detects an edit, not a recomputed chain.
    chain_key: SecretStr | None = None


class DashboardSettings(_Concern):
    """`record-deleter dashboard`: the web page on the deletions in flight and their outcomes."""

    model_config = SettingsConfigDict(env_prefix="DASHBOARD_", extra="forbid")

    # 127.0.0.1 by default: the page shows record ids, which are personal data.
    address: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535, description="0 = any free port (printed)")
    refresh_seconds: float = Field(default=1.5, ge=0.2, le=3600)
    # Bounds per refresh: in-flight records read and whose remaining rows are counted (one COUNT
    # per plan table each), each count reused for `count_cache_seconds`; recent answers shown.
    in_flight_limit: int = Field(default=50, ge=1, le=10_000)
    recent_limit: int = Field(default=50, ge=1, le=10_000)
    count_cache_seconds: float = Field(default=2.0, ge=0, le=3600)
    # A record with no batch committed for this long shows as waiting (e.g. the database down).
    running_seconds: float = Field(default=10.0, gt=0, le=86_400)
    # Comma-separated status URLs of the workers (http://host:WORKER_METRICS_PORT): their
    # readiness and store errors are shown. Empty: no workers section.
    worker_urls: str = ""

    @field_validator("worker_urls")
    @classmethod
    def _worker_urls(cls, v: str) -> str:
        for url in (u.strip() for u in v.split(",") if u.strip()):
            parts = urlsplit(url)
            credentials = parts.username or parts.password
            if parts.scheme not in ("http", "https") or not parts.hostname or credentials:
                raise ValueError("must be comma-separated http(s)://host:port URLs without credentials")
        return v

    @property
    def worker_url_list(self) -> list[str]:
        return [u.strip().rstrip("/") for u in self.worker_urls.split(",") if u.strip()]


class Settings(BaseModel):
    broker: BrokerSettings
    # librdkafka properties passed through to every client (BROKER_PROPERTIES_FILE, BROKER_RDKAFKA_*)
    broker_properties: dict[str, str] = Field(default_factory=dict)
    database: DatabaseSettings
    resonate: ResonateSettings
    workflow: WorkflowSettings
    worker: WorkerSettings
    audit: AuditSettings

    @property
    def identity(self) -> AuditIdentity:
        """Who writes the evidence and with which keys (the record stores' `identity`)."""
        key = self.worker.log_hash_key
        chain = self.audit.chain_key.get_secret_value() if self.audit.chain_key else ""
        return AuditIdentity(
            worker=self.worker.identity,
            ledger_key=key.get_secret_value().encode() if key and self.audit.record_ids == "hashed" else None,
            chain_key=chain.encode() or None,
        )

    dashboard: DashboardSettings


_CONCERNS: dict[str, type[_Concern]] = {
    "broker": BrokerSettings,
    "database": DatabaseSettings,
    "resonate": ResonateSettings,
    "workflow": WorkflowSettings,
    "worker": WorkerSettings,
    "audit": AuditSettings,
    "dashboard": DashboardSettings,
}


class SettingsError(Exception):
    """One line naming the setting, the bad value and what is allowed."""


# Secret values: SecretStr in their models, never shown (errors, logs, `check`, `config show`).
SECRET_SETTINGS = frozenset(
    {
        "DATABASE_URL",
        "BROKER_SASL_PASSWORD",
        "BROKER_SSL_KEY_PASSWORD",
        "RESONATE_PASSWORD",
        "WORKER_LOG_HASH_KEY",
        "AUDIT_CHAIN_KEY",
    }
)
FILE_SUFFIX = "_FILE"
SECRETS_DIR_VARIABLE = "RECORD_DELETER_SECRETS_DIR"


def env_name(model: type[_Concern], field: str) -> str:
    return f"{model.model_config.get('env_prefix', '')}{field}".upper()


def _file_values(model: type[_Concern], environ: Mapping[str, str]) -> dict[str, str]:
    """Values from `NAME_FILE` variables: the file's content without its final line break."""
    out: dict[str, str] = {}
    for field in model.model_fields:
        name = env_name(model, field)
        path = environ.get(name + FILE_SUFFIX)
        if path is None:
            continue
        if name in environ:
            raise SettingsError(f"{name} and {name}{FILE_SUFFIX} are both set; set one of them")
        try:
            out[field] = Path(path).read_text().removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise SettingsError(f"{name}{FILE_SUFFIX}: cannot read {path} ({reason})") from None
    return out


def _secrets_dir(environ: Mapping[str, str]) -> Path | None:
    value = environ.get(SECRETS_DIR_VARIABLE)
    if not value:
        return None
    path = Path(value)
    if not path.is_dir():
        raise SettingsError(f"{SECRETS_DIR_VARIABLE} = {value!r}: not a directory (or not readable)")
    try:
        for entry in path.iterdir():
            if entry.is_file() and entry.name.upper() in _known_names():
                entry.read_bytes()  # one line naming an unreadable one, before the models read them
    except OSError as exc:
        where = getattr(exc, "filename", None) or value
        raise SettingsError(f"{SECRETS_DIR_VARIABLE}: cannot read {where} ({exc.strerror})") from None
    return path


def load_settings(
    config_file: str | None = None, overrides: dict[str, dict[str, Any]] | None = None
) -> Settings:
    """Load every concern; `overrides` (from a command, e.g. the demo) win over env and file."""
    path = config_file or os.environ.get("RECORD_DELETER_CONFIG")
    file_values: dict[str, Any] = {}
    if path:
        try:
            file_values = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise SettingsError(f"config file {path} does not exist") from exc
        except IsADirectoryError as exc:
            raise SettingsError(f"config file {path} is a directory; give the path of a TOML file") from exc
        except (PermissionError, UnicodeDecodeError) as exc:
            raise SettingsError(f"config file {path} cannot be read as text ({type(exc).__name__})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc
        unknown = set(file_values) - set(_CONCERNS)
        if unknown:
            raise SettingsError(
                f"config file {path} has unknown section(s) {sorted(unknown)}; allowed: {sorted(_CONCERNS)}"
            )
    for warning in unknown_variables(os.environ):
        print(f"record-deleter: warning: {warning}", file=sys.stderr)
    secrets_dir = _secrets_dir(os.environ)
    values: dict[str, Any] = {}
    for name, model in _CONCERNS.items():
        try:
            # NAME_FILE wins over the TOML file (NAME itself wins over both: the env source).
            given = {**file_values.get(name, {}), **_file_values(model, os.environ)}
            concern = model(_secrets_dir=secrets_dir, **given)  # type: ignore[call-arg]
            # A command's own settings (the demo's embedded defaults) win over the environment and
            # the file: assigned one by one, each validated (validating a whole model again would
            # read the environment again, and the environment wins there).
            for key, value in (overrides or {}).get(name, {}).items():
                setattr(concern, key, value)
        except ValidationError as exc:
            raise SettingsError(_describe(name, model, exc)) from None
        except OSError as exc:
            raise SettingsError(f"invalid {name} setting: cannot read a file ({exc.strerror})") from None
        except ValueError as exc:
            raise SettingsError(f"invalid {name} setting: {_masked_text(str(exc))}") from None
        values[name] = concern
    check_broker(values["broker"])
    check_audit(values["audit"], values["worker"])
    properties = librdkafka_properties(values["broker"], os.environ)
    return Settings(**values, broker_properties=properties)


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def _masked_text(text: str) -> str:
    """`text` with the userinfo of any URL in it replaced by `***@`."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def is_secret(env: str) -> bool:
    """A secret setting: one of SECRET_SETTINGS, or any name with PASSWORD or KEY in it (so that a
    setting added later is hidden before anyone remembers to list it)."""
    return env in SECRET_SETTINGS or "PASSWORD" in env or "KEY" in env


def _shown(env: str, value: object) -> str:
    """A rejected value as an error message may show it: a secret not at all, a URL without its
    userinfo (user:password@)."""
    if is_secret(env):
        return "<hidden>"
    if isinstance(value, str):
        return repr(_masked_text(value))
    return repr(value)


def _known_names() -> set[str]:
    return {env_name(model, field) for model in _CONCERNS.values() for field in model.model_fields}


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning per variable with a settings prefix that names no setting (a typo is otherwise
    silently ignored), with the closest setting's name when there is one."""
    names = _known_names()
    known = names | {n + FILE_SUFFIX for n in names}
    prefixes = tuple(str(model.model_config.get("env_prefix", "")) for model in _CONCERNS.values())
    out = []
    for variable in sorted(environ):
        if variable.startswith(RDKAFKA_PREFIX):
            continue
        if variable.startswith(prefixes) and variable not in known:
            close = difflib.get_close_matches(variable, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            out.append(f"{variable} is not a setting and is ignored{hint}")
    return out


def _describe(name: str, model: type[_Concern], exc: ValidationError) -> str:
    err = exc.errors()[0]
    reason = _masked_text(err["msg"].removeprefix("Value error, "))
    if not err["loc"]:  # a rule between settings (e.g. WORKER_LOG_RECORD_IDS needs a key)
        return f"invalid {name} settings: {reason}"
    field = str(err["loc"][0])
    env = env_name(model, field)
    shown = _shown(env, err.get("input"))
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(model.model_fields))
        return f"unknown setting {name}.{field}; allowed in [{name}]: {allowed}"
    return f"invalid setting {env} ({name}.{field}) = {shown}: {reason}"


def effective_settings(settings: Settings) -> list[tuple[str, str]]:
    """(ENV_NAME, value) of every setting in effect, secrets as `***` (unset: empty): what
    `record-deleter config show` prints."""
    out: list[tuple[str, str]] = []
    for name, model in _CONCERNS.items():
        concern = getattr(settings, name)
        for field in model.model_fields:
            value = getattr(concern, field)
            env = env_name(model, field)
            if value is None:
                shown = ""
            elif isinstance(value, SecretStr) or is_secret(env):
                shown = "***"
            else:
                shown = _masked_text(str(value))
            out.append((env, shown))
    return out
