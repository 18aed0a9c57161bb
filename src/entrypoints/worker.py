"""The `worker` command: hand requests off until SIGTERM/SIGINT, then shut down cleanly."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from ..domain.errors import BrokerUnavailable, RuntimeStopped
from ..domain.handoff import HandOffGaveUp
from .containers import WorkerContainer
from .settings import Settings

log = logging.getLogger("record_deleter.worker")

EXIT_OK = 0
EXIT_UNAVAILABLE = 3


def run_worker(container: WorkerContainer) -> int:
    """Run until a signal; exit 3 when the runtime/broker stays unreachable (supervisor restarts)."""
    settings: Settings = container.settings()
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping after the current message", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    metrics_port = settings.worker.metrics_port
    if metrics_port:
        container.prometheus().serve(metrics_port)
        log.info("metrics on http://127.0.0.1:%d/metrics", metrics_port)
    runtime = container.runtime()
    runtime.start_runtime()
    container.prometheus().in_flight.set_function(runtime.in_flight)
    source = container.request_source()
    handoff = container.handoff(source=source)
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
        source.close()
        container.shutdown_resources()
        log.info("worker stopped (exit %d)", code)
    return code
