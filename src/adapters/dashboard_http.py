"""The dashboard's web server: one static page and two JSON endpoints; anything else is 404.

* `/` (and `/dashboard.js`, `/dashboard.css`): the page, shipped as package data, no build step.
* `/api/overview`: in flight, recent answers, throughput, workers (`DashboardOverview`).
* `/api/history?record=ID`: one record's whole history, as `record-deleter evidence` reads it.

Served like the worker's status endpoint (`wsgi_serving`), by the standard library's WSGI server
on a thread of its own per request: a page polled every second or two by a few people needs no
framework. Record ids and reasons are untrusted text: the page writes them with `textContent`
only, and every response forbids what an injected string could use anyway (a Content-Security-
Policy allowing this origin's script only, no sniffing, no framing).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from ..domain.errors import RecordStoreUnavailable
from .wsgi_serving import ThreadedWsgiServer

MAX_QUERY = 300  # a record id is at most 128 characters; anything longer is not one
STATIC = {
    "/": ("dashboard.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]

StartResponse = Callable[..., Any]


class DashboardServerError(Exception):
    """The page cannot be served (the address is taken, or not an address of this host)."""


def static_file(name: str) -> bytes:
    """A file of the page, from the installed package (`dashboard_static/`)."""
    return (resources.files(__package__ or "") / "dashboard_static" / name).read_bytes()


def json_bytes(document: Any) -> bytes:
    """JSON with `<`, `>` and `&` escaped too: harmless even if a browser were to render it."""
    text = json.dumps(document, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


class DashboardApp:
    """The WSGI application: `overview()` and `history(record)` return JSON-ready values."""

    def __init__(self, overview: Callable[[], Any], history: Callable[[str], Any]) -> None:
        self._overview, self._history = overview, history
        self._files = {path: (static_file(name), kind) for path, (name, kind) in STATIC.items()}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return self._send(start_response, "405 Method Not Allowed", b"read only\n", "text/plain")
        path = environ.get("PATH_INFO", "")
        if path in self._files:
            body, kind = self._files[path]
            return self._send(start_response, "200 OK", body, kind)
        if path == "/api/overview":
            return self._send(start_response, "200 OK", json_bytes(self._overview()), "application/json")
        if path == "/api/history":
            return self._history_response(environ, start_response)
        body = b"not found: the page is / and its data /api/overview and /api/history?record=ID\n"
        return self._send(start_response, "404 Not Found", body, "text/plain; charset=utf-8")

    def _history_response(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        record = parse_qs(environ.get("QUERY_STRING", "")).get("record", [""])[0].strip()
        if not record or len(record) > MAX_QUERY:
            error = {"error": f"give ?record= a record id (1-{MAX_QUERY} characters)"}
            return self._send(start_response, "400 Bad Request", json_bytes(error), "application/json")
        try:
            document = self._history(record)
        except RecordStoreUnavailable as exc:
            body = json_bytes({"error": str(exc)})
            return self._send(start_response, "503 Service Unavailable", body, "application/json")
        return self._send(start_response, "200 OK", json_bytes(document), "application/json")

    @staticmethod
    def _send(start_response: StartResponse, status: str, body: bytes, kind: str) -> Iterable[bytes]:
        headers = [("Content-Type", kind), ("Content-Length", str(len(body))), *SECURITY_HEADERS]
        start_response(status, headers)
        return [body]


class DashboardServer:
    """Serves `app` on `address:port` from a daemon thread until `stop()`."""

    def __init__(self, app: DashboardApp) -> None:
        self._http = ThreadedWsgiServer(
            app, what="the dashboard", thread_name="dashboard-http", error=DashboardServerError
        )

    def start(self, address: str, port: int) -> int:
        """Bind and serve; returns the port (the one the OS chose when `port` is 0)."""
        return self._http.start(address, port)

    def stop(self) -> None:
        self._http.stop()
