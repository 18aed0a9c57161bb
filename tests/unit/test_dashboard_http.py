"""The dashboard's web app: its paths, the JSON it serves, and that untrusted text stays text."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from record_deleter.adapters.dashboard_http import (
    DashboardApp,
    DashboardServer,
    DashboardServerError,
    static_file,
)
from record_deleter.adapters.dashboard_overview import RowsLeftCounter, store_errors
from record_deleter.adapters.sql_dashboard import shown_id
from record_deleter.domain.errors import RecordStoreUnavailable

pytestmark = pytest.mark.unit

EVIL = '<img src=x onerror="alert(1)">&</script>'


def overview() -> dict[str, Any]:
    return {
        "now": "2026-12-01T14:00:00+00:00",
        "error": None,
        "in_flight": [{"record_id": EVIL, "shown_id": EVIL, "rows_left": None}],
        "answers": [{"record_id": "r", "reason": EVIL}],
    }


def history(record: str) -> dict[str, Any]:
    if record == "down":
        raise RecordStoreUnavailable("reading the record's history: OperationalError")
    return {"query": record, "requests": [], "attempts": [], "batches": [], "answers": []}


@pytest.fixture
def base() -> Iterator[str]:
    server = DashboardServer(DashboardApp(overview, history))
    port = server.start("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_the_page_and_its_files_are_served_from_the_package(base) -> None:
    for path, kind in [
        ("/", "text/html"),
        ("/dashboard.js", "text/javascript"),
        ("/dashboard.css", "text/css"),
    ]:
        status, headers, body = get(base + path)
        assert status == 200, path
        assert headers["Content-Type"].startswith(kind)
        assert body
    assert b'src="/dashboard.js"' in get(base + "/")[2]


@pytest.mark.parametrize(
    "path", ["/nope", "/api", "/api/overview/x", "/dashboard.html", "/../pyproject.toml"]
)
def test_unknown_paths_are_404(base, path) -> None:
    status, _, body = get(base + path)
    assert status == 404
    assert b"/api/overview" in body


def test_writes_are_refused(base) -> None:
    assert get(base + "/api/overview", method="POST")[0] == 405


def test_overview_is_json_with_markup_escaped_and_security_headers(base) -> None:
    status, headers, body = get(base + "/api/overview")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "unsafe-inline" not in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    for markup in (b"<", b">", b"&"):  # sent as \u003c, \u003e, \u0026
        assert markup not in body
    document = json.loads(body)
    assert document["in_flight"][0]["record_id"] == EVIL  # the same text once parsed
    assert document["answers"][0]["reason"] == EVIL


def test_history_takes_one_record_and_reports_an_unreachable_database(base) -> None:
    status, _, body = get(base + "/api/history?record=%20rec-1%20")
    assert status == 200
    assert json.loads(body)["query"] == "rec-1"
    assert get(base + "/api/history")[0] == 400
    assert get(base + "/api/history?record=" + "x" * 301)[0] == 400
    status, _, body = get(base + "/api/history?record=down")
    assert status == 503
    assert "OperationalError" in json.loads(body)["error"]


def test_the_page_writes_data_as_text_only() -> None:
    script = static_file("dashboard.js").decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "textContent" in script
    page = static_file("dashboard.html").decode()
    assert "<script>" not in page  # nothing inline: the CSP forbids it
    assert "style=" not in page


def test_a_port_in_use_and_a_bad_address_are_one_line_errors() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DashboardServerError, match=rf"127\.0\.0\.1:{port}: Address already in use"):
            DashboardServer(DashboardApp(overview, history)).start("127.0.0.1", port)
    with pytest.raises(DashboardServerError, match=r"cannot serve the dashboard on 10\.255\.255\.256:0"):
        DashboardServer(DashboardApp(overview, history)).start("10.255.255.256", 0)


def test_rows_left_are_counted_once_per_ttl_and_never_for_a_hashed_id() -> None:
    calls: list[str] = []

    def count(record_id: Any) -> int:
        calls.append(record_id.value)
        if record_id.value == "down":
            raise RecordStoreUnavailable("database unreachable")
        return 5

    counter = RowsLeftCounter(count, ttl=60)
    assert counter("rec") == 5
    assert counter("rec") == 5
    assert counter("down") is None
    assert counter("f" * 64) is None
    assert calls == ["rec", "down"]
    assert shown_id("f" * 64) == "f" * 16
    assert shown_id("F" * 64) == "F" * 64  # not how a hash is written: shown as it is
    assert shown_id("rec-1") == "rec-1"


def test_store_errors_are_read_from_a_workers_metrics() -> None:
    text = "# HELP x\nrecord_deleter_store_errors_created 1.7e9\nrecord_deleter_store_errors_total 3.0\n"
    assert store_errors(text) == 3
    assert store_errors("nothing here\n") is None


def test_an_unreachable_database_is_reported_on_the_page_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from record_deleter.entrypoints.bootstrap import bootstrap
    from record_deleter.entrypoints.containers import DashboardContainer
    from record_deleter.entrypoints.dashboard import _schema_warning
    from record_deleter.entrypoints.settings import load_settings

    secret = "s3cr3t-pa55"
    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://app:{secret}@127.0.0.1:1/app?connect_timeout=2")
    container = bootstrap(DashboardContainer, load_settings())
    try:
        _schema_warning(container)
        document = container.overview()()
        app = container.app()
        bodies: list[bytes] = []
        for path, query in [("/api/overview", ""), ("/api/history", "record=rec-1")]:
            statuses: list[str] = []
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query}
            bodies.extend(app(environ, lambda status, _headers, s=statuses: s.append(status)))
            assert statuses[0][:3] in ("200", "503")
    finally:
        container.shutdown_resources()
    assert "cannot be read" in document["error"]
    assert "OperationalError" in bodies[1].decode()
    out = capsys.readouterr()
    for text in (json.dumps(document), *(b.decode() for b in bodies), out.out, out.err):
        assert secret not in text
