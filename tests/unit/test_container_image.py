"""The worker's Dockerfile: what an operator relies on, checked without a Docker engine. Its pip
steps (docker/install-wheel.sh) run in a fresh virtual environment in scripts/check_wheel.sh."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(f"{name} ")]


def test_a_slim_base_and_the_wheel_installed_by_the_checked_script() -> None:
    assert all(base.startswith("python:3.13-slim") for base in instructions("FROM"))
    runs = " ".join(instructions("RUN"))
    assert "install-wheel build" in runs
    assert "install-wheel install /wheels" in runs
    assert "docker/install-wheel.sh" in " ".join(instructions("COPY"))


def test_it_runs_the_worker_as_a_non_root_user() -> None:
    [user] = instructions("USER")
    assert user not in ("root", "0")
    assert instructions("ENTRYPOINT") == ['["record-deleter"]']
    assert instructions("CMD") == ['["worker"]']


def test_its_health_check_asks_the_workers_liveness_endpoint() -> None:
    [health] = instructions("HEALTHCHECK")
    env = " ".join(instructions("ENV"))
    port = re.search(r"WORKER_METRICS_PORT=(\d+)", env)
    assert port is not None
    assert "WORKER_METRICS_ADDRESS=0.0.0.0" in env
    assert f"127.0.0.1:{port.group(1)}/healthz" in health
    assert instructions("EXPOSE") == [port.group(1)]


def test_the_compose_file_runs_the_worker_from_this_image() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"^  worker:\n(    .*\n)*    build: \.\n", compose, re.MULTILINE), (
        "a worker service built here"
    )
