"""The Resonate server behind basic auth: `scripts/services.sh up` starts it with credentials on its
API and its long-poll port (RESONATE_USERNAME/RESONATE_PASSWORD in the env file, used by every
test); a private server (`resonate-cmd --auth`) can require them too."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from record_deleter.adapters.resonate_runtime import probe_server
from tests.harness import Topics, check_errors, free_port, kafka_bootstrap, resonate_endpoint
from tests.harness.endpoints import endpoint
from tests.harness.processes import cli_env, run_cli
from tests.harness.services import ResonateServer

pytestmark = pytest.mark.integration


def credentials() -> tuple[str, str]:
    return (
        endpoint("RESONATE_USERNAME", "the Resonate server's user"),
        endpoint("RESONATE_PASSWORD", "the Resonate server's password"),
    )


def status(url: str, auth: tuple[str, str] | None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_shared_server_requires_the_credentials_on_api_and_poll_port() -> None:
    url, poll_port = resonate_endpoint()
    user, password = credentials()
    assert probe_server(url, (user, password)) is None
    for auth in (None, (user, "not-the-password")):
        problem = probe_server(url, auth)
        assert problem is not None
        assert "refused the credentials (HTTP 401)" in problem
    poll = f"http://127.0.0.1:{poll_port}/poll/record-deleter/probe"
    assert status(poll, None) == 401
    assert status(poll, (user, "not-the-password")) == 401


def test_a_wrong_password_stops_the_worker_at_its_check(tmp_path: Path) -> None:
    url, poll_port = resonate_endpoint()
    env = cli_env(
        BROKER_KIND="kafka",
        BROKER_BOOTSTRAP_SERVERS=kafka_bootstrap(),
        **Topics.fresh("auth").create(kafka_bootstrap(), 1).env(),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
        DATABASE_DELETION_PLAN="deletion_audit:record_id",  # a table `db upgrade` makes
        RESONATE_URL=url,
        RESONATE_MESSAGE_SOURCE_PORT=poll_port,
        RESONATE_PASSWORD="not-the-password",
    )
    assert env["RESONATE_USERNAME"] == credentials()[0]
    run_cli("db", "upgrade", env=env)
    result = subprocess.run(
        [sys.executable, "-m", "record_deleter", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    errors = check_errors(result.stderr)
    assert errors == [
        f"record-deleter: error: resonate server {url}: refused the credentials (HTTP 401); "
        "check RESONATE_USERNAME and RESONATE_PASSWORD"
    ]
    assert "not-the-password" not in result.stdout + result.stderr


def test_a_private_server_with_auth(tmp_path: Path) -> None:
    auth = ("someone", "s3cret")
    server = ResonateServer(tmp_path / "resonate", api=free_port(), poll=free_port(), auth=auth)
    assert "--api-http-auth" in server.command
    assert "--aio-poll-auth" in server.command
    with server:
        assert probe_server(server.url, auth) is None
        assert "refused the credentials" in (probe_server(server.url, ("someone", "wrong")) or "")


def test_a_private_server_without_auth_still_opens(tmp_path: Path) -> None:
    server = ResonateServer(tmp_path / "resonate", api=free_port(), poll=free_port())
    assert not any("auth" in arg for arg in server.command)
    with server:
        assert probe_server(server.url, None) is None
        assert probe_server(server.url, credentials()) is None  # the shared credentials are harmless
