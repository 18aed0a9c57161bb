"""The worker's HTTP status endpoint: `/metrics`, `/healthz`, `/readyz`; anything else is 404.

* `/metrics`: the Prometheus registry, plus the process, platform and garbage-collector collectors
  of prometheus-client (CPU, memory, open files, Python version, collections).
* `/healthz` (liveness): 200 while the process's loops turn, 503 with the reason otherwise, so a
  supervisor restarts a worker that is stuck rather than down.
* `/readyz` (readiness): 200 when every dependency check passes, 503 naming each one that does not
  (partitions assigned, the Resonate server and the database reachable). Checks run at most once
  per `cache_seconds`, so scrapes and probes do not load the services.

Served by the standard library's WSGI server, a thread per request (`wsgi_serving`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .wsgi_serving import ThreadedWsgiServer

log = logging.getLogger(__name__)

Check = Callable[[], str | None]  # None when fine, else why not, in a few words


class StatusServerError(Exception):
    """The endpoint cannot be served (the address is taken, or not an address of this host)."""


def add_runtime_collectors(registry: CollectorRegistry) -> None:
    """Process (CPU, memory, file descriptors), platform (Python version) and GC metrics."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


class _CachedCheck:
    def __init__(self, check: Check, ttl: float) -> None:
        self._check, self._ttl = check, ttl
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._result: str | None = None

    def __call__(self) -> str | None:
        with self._lock:
            if time.monotonic() - self._at >= self._ttl:
                try:
                    self._result = self._check()
                except Exception as exc:  # a check that raises is a failing check, not a 500
                    self._result = f"{type(exc).__name__}: {exc}"
                self._at = time.monotonic()
            return self._result


class StatusServer:
    """Serves the three endpoints on `address:port` from a daemon thread until `stop()`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        live: Mapping[str, Check],
        ready: Mapping[str, Check],
        cache_seconds: float = 2.0,
    ) -> None:
        self._metrics = make_wsgi_app(registry)
        self._live = {name: _CachedCheck(c, 0.0) for name, c in live.items()}
        self._ready = {name: _CachedCheck(c, cache_seconds) for name, c in ready.items()}
        self._http = ThreadedWsgiServer(
            self._app, what="the status endpoint", thread_name="status-http", error=StatusServerError
        )

    def start(self, address: str, port: int) -> int:
        """Bind and serve; returns the port (the one the OS chose when `port` is 0)."""
        return self._http.start(address, port)

    def stop(self) -> None:
        self._http.stop()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return self._report(self._live, start_response)
        if path == "/readyz":
            return self._report(self._ready, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: the endpoints are /metrics, /healthz and /readyz\n"]

    @staticmethod
    def _report(checks: Mapping[str, _CachedCheck], start_response: Callable[..., Any]) -> Iterable[bytes]:
        failing = {name: why for name, check in checks.items() if (why := check()) is not None}
        status = "503 Service Unavailable" if failing else "200 OK"
        body = {"status": "fail" if failing else "ok", "checks": {n: failing.get(n, "ok") for n in checks}}
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode() + b"\n"]
