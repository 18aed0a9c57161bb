"""Typed settings, validated at start-up from environment variables and an optional TOML file.

Each concern has its own model and environment prefix (BROKER_, DATABASE_, RESONATE_,
WORKFLOW_, WORKER_). A TOML file (`--config FILE` or RECORD_DELETER_CONFIG) may hold the same
keys in sections [broker], [database], ...; environment variables win over the file.
"""

from __future__ import annotations

import difflib
import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url

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
        return (env_settings, init_settings)


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
    # its partitions move. librdkafka's 45 s default stalls the group for that long after every
    # crash (RELIABILITY.md, F6); the broker's floor is group.min.session.timeout.ms (6 s).
    session_timeout_seconds: float = Field(default=10.0, ge=1, le=3600)
    # The consumer group protocol. `consumer` (KIP-848, Kafka 4): the broker moves partitions one
    # member at a time, so a worker joining or dying never stops the others, and a backlog spreads
    # over a worker added to drain it; its session timeout is the broker's
    # `group.consumer.session.timeout.ms` (45 s by default; BROKER_SESSION_TIMEOUT_SECONDS is for
    # `classic`). `classic`: eager rebalances, for brokers without KIP-848 (Kafka < 4, Redpanda).
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


class DatabaseSettings(_Concern):
    model_config = SettingsConfigDict(env_prefix="DATABASE_", extra="forbid")

    url: str | None = Field(default=None, repr=False, description="required by every command but demo")
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
    def _url(cls, v: str | None) -> str | None:
        if v is None or v == "memory" or v.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            return v
        raise ValueError("must be 'memory', a sqlite:/// URL or a postgresql+psycopg:// URL")

    @field_validator("deletion_plan")
    @classmethod
    def _plan(cls, v: str) -> str:
        DeletionPlan.parse(v)
        return v

    @property
    def kind(self) -> str:
        return "memory" if self.url == "memory" else "sql"

    @property
    def display_url(self) -> str:
        """The URL with its password hidden, for messages and logs."""
        if self.url is None or self.url == "memory":
            return str(self.url)
        return make_url(self.url).render_as_string(hide_password=True)


class ResonateSettings(_Concern):
    model_config = SettingsConfigDict(env_prefix="RESONATE_", extra="forbid")

    mode: Literal["local", "remote"] = "remote"
    url: str = "http://127.0.0.1:8001"
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

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        scheme, sep, rest = v.partition("://")
        host, _, port = rest.rstrip("/").rpartition(":")
        if scheme not in ("http", "https") or not sep or not host or not port.isdigit():
            raise ValueError("must be http(s)://host:port of the Resonate server's API")
        return v.rstrip("/")

    @property
    def host(self) -> str:
        return self.url.rpartition(":")[0]

    @property
    def store_port(self) -> str:
        return self.url.rpartition(":")[2]

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
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def json_logs(self) -> bool:
        return self.log_format == "json"


class Settings(BaseModel):
    broker: BrokerSettings
    # librdkafka properties passed through to every client (BROKER_PROPERTIES_FILE, BROKER_RDKAFKA_*)
    broker_properties: dict[str, str] = Field(default_factory=dict)
    database: DatabaseSettings
    resonate: ResonateSettings
    workflow: WorkflowSettings
    worker: WorkerSettings


_CONCERNS: dict[str, type[_Concern]] = {
    "broker": BrokerSettings,
    "database": DatabaseSettings,
    "resonate": ResonateSettings,
    "workflow": WorkflowSettings,
    "worker": WorkerSettings,
}


class SettingsError(Exception):
    """One line naming the setting, the bad value and what is allowed."""


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
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc
        unknown = set(file_values) - set(_CONCERNS)
        if unknown:
            raise SettingsError(
                f"config file {path} has unknown section(s) {sorted(unknown)}; allowed: {sorted(_CONCERNS)}"
            )
    for warning in unknown_variables(os.environ):
        print(f"record-deleter: warning: {warning}", file=sys.stderr)
    values: dict[str, Any] = {}
    for name, model in _CONCERNS.items():
        try:
            concern = model(**file_values.get(name, {}))
            # A command's own settings (the demo's embedded defaults) win over the environment and
            # the file: assigned one by one, each validated (validating a whole model again would
            # read the environment again, and the environment wins there).
            for key, value in (overrides or {}).get(name, {}).items():
                setattr(concern, key, value)
        except ValidationError as exc:
            raise SettingsError(_describe(name, model, exc)) from None
        except ValueError as exc:
            raise SettingsError(f"invalid {name} setting: {exc}") from None
        values[name] = concern
    check_broker(values["broker"])
    properties = librdkafka_properties(values["broker"], os.environ)
    return Settings(**values, broker_properties=properties)


def _shown(field: str, value: object) -> str:
    """A rejected value as an error message may show it: secrets hidden, a URL's password masked."""
    if "password" in field:
        return "<hidden>"
    if isinstance(value, str) and "://" in value:
        scheme, _, rest = value.partition("://")
        credentials, at, host = rest.rpartition("@")
        if at and ":" in credentials:
            return repr(f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}")
    return repr(value)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning per variable with a settings prefix that names no setting (a typo is otherwise
    silently ignored), with the closest setting's name when there is one."""
    known = {
        f"{model.model_config.get('env_prefix', '')}{field}".upper()
        for model in _CONCERNS.values()
        for field in model.model_fields
    }
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
    field = str(err["loc"][0]) if err["loc"] else "?"
    prefix = model.model_config.get("env_prefix", "")
    env = f"{prefix}{field}".upper()
    shown = _shown(field, err.get("input"))
    reason = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(model.model_fields))
        return f"unknown setting {name}.{field}; allowed in [{name}]: {allowed}"
    return f"invalid setting {env} ({name}.{field}) = {shown}: {reason}"
