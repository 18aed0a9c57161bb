"""A WSGI application served on `address:port` by the standard library's server, one thread per
request, from a daemon thread until `stop()`: what the worker's status endpoint and the dashboard
share. Endpoints this small, polled every few seconds, need no framework; prometheus-client
provides the metrics app and the rest is a few lines of routing each.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes, probes and page refreshes every few seconds: not worth a log line each


class ThreadedWsgiServer:
    """Serves `app`; a bind that fails raises `error` naming `what` and the address, in one line."""

    def __init__(self, app: WsgiApp, *, what: str, thread_name: str, error: type[Exception]) -> None:
        self._app, self._what, self._thread_name, self._error = app, what, thread_name, error
        self._server: _Server | None = None

    def start(self, address: str, port: int) -> int:
        """Bind and serve; returns the port (the one the OS chose when `port` is 0)."""
        try:
            server = make_server(address, port, self._app, server_class=_Server, handler_class=_QuietHandler)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise self._error(f"cannot serve {self._what} on {address}:{port}: {reason}") from exc
        self._server = server
        threading.Thread(target=server.serve_forever, name=self._thread_name, daemon=True).start()
        return int(server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
