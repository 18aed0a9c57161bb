"""The `worker` command: hand requests off until SIGTERM/SIGINT, then shut down cleanly."""

from __future__ import annotations

import logging
from typing import Any

from ..adapters.resonate_runtime import probe_server
from ..adapters.status_http import StatusServer, StatusServerError
from ..domain.errors import BrokerUnavailable, RuntimeStopped
from ..domain.handoff import HandOff, HandOffGaveUp
from ..domain.ports import RequestSource
from .containers import WorkerContainer
from .lifecycle import stop_on_signals
from .settings import Settings

log = logging.getLogger("record_deleter.worker")

EXIT_OK = 0
EXIT_BAD_SETTING = 2
EXIT_UNAVAILABLE = 3


def run_worker(container: WorkerContainer) -> int:
    """Run until a signal; exit 3 when the runtime/broker stays unreachable (supervisor restarts)."""
    settings: Settings = container.settings()
    stop = stop_on_signals(log, "stopping after the current message")

    runtime = container.runtime()
    runtime.start_runtime()
    metrics = container.prometheus()
    metrics.in_flight.set_function(runtime.in_flight)
    metrics.oldest_in_flight.set_function(runtime.oldest_in_flight_seconds)
    source = container.request_source()
    metrics.lag.set_function(lambda: float("nan") if (lag := source.lag()) is None else float(lag))
    handoff = container.handoff(source=source)
    status = _status_server(container, settings, runtime, source, handoff)
    if settings.worker.metrics_port:
        try:
            port = status.start(settings.worker.metrics_address, settings.worker.metrics_port)
        except StatusServerError as exc:
            log.error("%s (WORKER_METRICS_ADDRESS, WORKER_METRICS_PORT)", exc)  # noqa: TRY400 - one line
            source.close()
            container.shutdown_resources()
            return EXIT_BAD_SETTING
        log.info(
            "metrics, health and readiness on http://%s:%d/{metrics,healthz,readyz}",
            settings.worker.metrics_address,
            port,
        )
    broker = settings.broker
    log.info(
        "worker started: %s %s, topic %s, group %s, resonate %s %s (poll %s)",
        broker.kind,
        broker.bootstrap_servers,
        broker.request_topic,
        broker.group,
        settings.resonate.mode,
        settings.resonate.store_url,  # never carries credentials (settings refuse them)
        settings.resonate.effective_poll_url,
    )
    code = EXIT_OK
    try:
        handoff.run(lambda: stop.is_set() or not runtime.healthy())
    except (HandOffGaveUp, BrokerUnavailable, RuntimeStopped) as exc:
        log.error("giving up: %s", exc)  # noqa: TRY400 - the reason is the message; no traceback needed
        code = EXIT_UNAVAILABLE
    else:
        if not runtime.healthy():
            log.error("giving up: the Resonate runtime shut down after a store error (see above)")
            code = EXIT_UNAVAILABLE
    finally:
        status.stop()
        source.close()
        container.shutdown_resources()
        log.info("worker stopped (exit %d)", code)
    return code


def _status_server(
    container: WorkerContainer, settings: Settings, runtime: Any, source: RequestSource, handoff: HandOff
) -> StatusServer:
    """/healthz: the hand-off loop turns and the SDK runs. /readyz: partitions held, the Resonate
    server and the database answer."""
    limit = settings.worker.liveness_seconds

    def loop() -> str | None:
        age = handoff.loop_age()
        return (
            None if age <= limit else f"the hand-off loop has not turned for {age:.0f}s (limit {limit:.0f}s)"
        )

    def sdk() -> str | None:
        return None if runtime.healthy() else "the Resonate SDK stopped after a store error"

    def partitions() -> str | None:
        return None if source.held_partitions() else "no partitions of the request topic assigned"

    def resonate() -> str | None:
        if settings.resonate.mode != "remote":
            return sdk()
        return probe_server(settings.resonate.url, settings.resonate.auth, timeout=2.0) or sdk()

    def database() -> str | None:
        container.record_store().latest_attempts(None, 1)
        return None

    return StatusServer(
        container.prometheus().registry,
        live={"loop": loop, "sdk": sdk},
        ready={"partitions": partitions, "resonate": resonate, "database": database},
    )
