"""Where the real services are, under the names `scripts/services.sh up` exports (source its env
file), plus the small helpers every harness module uses. No pytest here: benchmarks use it too."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class MissingEndpoint(LookupError):
    """A real service is needed and the variable naming it is not set."""


def endpoint(variable: str, what: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise MissingEndpoint(
            f"{what} is required but {variable} is not set: run the suite with `make test` (which "
            f"provisions it), or `scripts/services.sh up` and source its env file, or export {variable} "
            f"to point at your own {what}"
        )
    return value


def kafka_bootstrap() -> str:
    return endpoint("BROKER_BOOTSTRAP_SERVERS", "a Kafka broker")


def resonate_endpoint() -> tuple[str, str]:
    """(RESONATE_URL, RESONATE_MESSAGE_SOURCE_PORT) of the shared Resonate server."""
    url = endpoint("RESONATE_URL", "the Resonate server")
    port = endpoint("RESONATE_MESSAGE_SOURCE_PORT", "the Resonate server's long-poll port")
    return url.rstrip("/"), port


def postgres_url() -> str:
    """DATABASE_URL, which in the test environment is the shared PostgreSQL (never a worker's
    default: every worker environment the harness builds sets its own DATABASE_URL)."""
    url = endpoint("DATABASE_URL", "PostgreSQL")
    if not url.startswith("postgresql"):
        raise MissingEndpoint(
            f"DATABASE_URL must name PostgreSQL here (postgresql+psycopg://...), not {url!r}"
        )
    return url


def services_dir() -> Path:
    """The state dir of `scripts/services.sh` (its pid files, its env file)."""
    return Path(os.environ.get("RECORD_DELETER_SERVICES_DIR") or ROOT / ".services")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for[T](
    condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, message: str = ""
) -> T:
    """Poll `condition` until it returns a truthy value; TimeoutError naming `message` at the deadline."""
    deadline = time.monotonic() + timeout
    last = condition()
    while not last:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for: {message or condition}")
        time.sleep(interval)
        last = condition()
    return last
