"""KeepAliveRemoteStore against a real Resonate server: one connection per thread, the SDK's
error semantics, and recovery when the server restarts under its pooled connection."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import urllib3.util.connection
from resonate.errors import ResonateStoreError
from resonate.retry_policies import Constant
from resonate.stores import RemoteStore

from record_deleter.adapters.resonate_sdk_patches import KeepAliveRemoteStore
from tests.conftest import service_endpoint
from tests.harness import free_port, resonate_server, unique

pytestmark = pytest.mark.integration


def _timeout_ms() -> int:
    return int((time.time() + 3600) * 1000)


@pytest.fixture
def server_url() -> tuple[str, str]:
    url = service_endpoint("RESONATE_URL", "the Resonate server (scripts/services.sh up)")
    host, _, port = url.rpartition(":")
    return host, port


def _connections_for(store_cls: type[RemoteStore], host: str, port: str, monkeypatch) -> int:
    """TCP connections opened for 20 creates and a get (urllib3 for the SDK's store, http.client for ours)."""
    opened = []
    me = threading.get_ident()  # other tests' SDK threads (pollers) may connect meanwhile

    def counting(real):
        def connect(*args, **kwargs):
            if threading.get_ident() == me:
                opened.append(1)
            return real(*args, **kwargs)

        return connect

    monkeypatch.setattr(
        urllib3.util.connection, "create_connection", counting(urllib3.util.connection.create_connection)
    )
    monkeypatch.setattr(socket, "create_connection", counting(socket.create_connection))
    store = store_cls(host=host, port=port, retry_policy=Constant(delay=1, max_retries=3))
    prefix = unique("ka")
    for i in range(20):
        store.promises.create(f"{prefix}-{i}", _timeout_ms())
    assert store.promises.get(f"{prefix}-19").id == f"{prefix}-19"
    monkeypatch.undo()
    return len(opened)


def test_one_connection_per_thread_instead_of_one_per_request(server_url, monkeypatch) -> None:
    host, port = server_url
    assert _connections_for(RemoteStore, host, port, monkeypatch) == 21, "the SDK's store, for comparison"
    assert _connections_for(KeepAliveRemoteStore, host, port, monkeypatch) == 1


def test_a_client_error_raises_at_once_with_the_servers_reason(server_url) -> None:
    host, port = server_url
    store = KeepAliveRemoteStore(host=host, port=port, retry_policy=Constant(delay=1, max_retries=5))
    started = time.monotonic()
    with pytest.raises(ResonateStoreError) as err:
        store.promises.get(unique("no-such-promise"))
    assert time.monotonic() - started < 1, "a 404 is not retried"
    assert "not found" in str(err.value).lower()


def test_the_server_restarting_under_a_pooled_connection_costs_a_retry_not_an_error(tmp_path) -> None:
    binary = service_endpoint(
        "SERVICES_RESONATE_BIN", "the resonate server binary (built by scripts/services.sh)"
    )
    api, poll = free_port(), free_port()
    sqlite = ["--aio-store-sqlite-path", str(tmp_path / "resonate.db")]
    store = KeepAliveRemoteStore(
        host="http://127.0.0.1", port=str(api), retry_policy=Constant(delay=0.2, max_retries=50)
    )
    with resonate_server(binary, api, poll, sqlite, tmp_path / "resonate.log"):
        store.promises.create("before-restart", _timeout_ms())
    # the pooled connection now points at a dead server; a new one comes up on the same port
    with resonate_server(binary, api, poll, sqlite, tmp_path / "resonate.log"):
        store.promises.create("after-restart", _timeout_ms())
        assert store.promises.get("before-restart").id == "before-restart"
        assert store.promises.get("after-restart").id == "after-restart"
    unreachable = KeepAliveRemoteStore(
        host="http://127.0.0.1", port=str(api), retry_policy=Constant(delay=0.1, max_retries=2)
    )
    with pytest.raises(ResonateStoreError, match="request failed"):
        unreachable.promises.get("after-restart")
