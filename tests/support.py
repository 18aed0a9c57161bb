"""Helpers for integration and system tests against real services."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tests.conftest import service_endpoint, wait_for

ROOT = Path(__file__).resolve().parents[1]


def kafka_bootstrap() -> str:
    return service_endpoint("KAFKA_BOOTSTRAP_SERVERS", "a Kafka broker")


def resonate_endpoint() -> tuple[str, str]:
    """(RESONATE_URL, RESONATE_MESSAGE_SOURCE_PORT) of the real Resonate server."""
    url = service_endpoint("RESONATE_URL", "the Resonate server")
    port = service_endpoint("RESONATE_MESSAGE_SOURCE_PORT", "the Resonate server's long-poll port")
    return url, port


def postgres_url() -> str:
    return service_endpoint("DATABASE_URL_POSTGRES", "PostgreSQL")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in topics.items()]
    )
    for f in futures.values():
        f.result(30)


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def read_topic(
    bootstrap: str, topic: str, *, expect: int, timeout: float = 30.0, settle: float = 1.0
) -> list[Read]:
    """Read a topic from the start until `expect` messages arrived, then `settle` s more for extras."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[Read] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if settle_until is not None and time.monotonic() > settle_until:
                break
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            out.append(
                Read(
                    msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(), dict(msg.headers() or [])
                )
            )
            if len(out) >= expect and settle_until is None:
                settle_until = time.monotonic() + settle
    finally:
        consumer.close()
    return out


def committed_lag(bootstrap: str, group: str, topic: str) -> int:
    """Messages in `topic` not yet committed by `group` (0 = everything committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p) for p in meta.topics[topic].partitions]
        committed = consumer.committed(parts, timeout=10)
        lag = 0
        for tp in committed:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            lag += high - (tp.offset if tp.offset >= 0 else 0)
        return lag
    finally:
        consumer.close()


def cli_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "WORKFLOW_", "WORKER_"))}
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "record_deleter.entrypoints.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"record-deleter {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
        )
    return result


@contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `record-deleter worker` process; SIGTERM (then SIGKILL) when the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "record_deleter.entrypoints.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_store_args(db: tuple[str, int, str, str, str]) -> list[str]:
    host, port, user, password, name = db
    return [
        "--aio-store-sqlite-enable=false", "--aio-store-postgres-enable",
        "--aio-store-postgres-host", host, "--aio-store-postgres-port", str(port),
        "--aio-store-postgres-username", user, "--aio-store-postgres-password", password,
        "--aio-store-postgres-database", name, "--aio-store-postgres-query", "sslmode=disable",
    ]  # fmt: skip


@contextmanager
def resonate_server(
    binary: str, api: int, poll: int, store_args: list[str], log: Path
) -> Iterator[subprocess.Popen]:
    """A private Resonate server on 127.0.0.1 (for tests that stop or reconfigure it)."""
    cmd = [
        binary, "serve",
        "--api-http-addr", f"127.0.0.1:{api}", "--system-url", f"http://127.0.0.1:{api}",
        "--aio-poll-addr", f"127.0.0.1:{poll}", "--api-grpc-enable=false",
        "--metrics-addr", f"127.0.0.1:{free_port()}", *store_args,
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"resonate server exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                return requests.get(f"http://127.0.0.1:{api}/promises?id=*", timeout=1).status_code < 500
            except requests.RequestException:
                return False

        wait_for(ready, timeout=30, message="private resonate server ready")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
