"""`record-deleter dashboard`: serve the deletions page until SIGTERM or SIGINT.

Reads the ledger only (and the workers' status endpoints when DASHBOARD_WORKER_URLS names them):
it can run anywhere the database is reachable, any number of times, and never changes a thing.
"""

from __future__ import annotations

import logging
import sys

from ..adapters.dashboard_http import DashboardServerError
from ..adapters.sql_migrations import current_head, current_revision
from .containers import DashboardContainer
from .lifecycle import stop_on_signals

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_BAD_SETTING = 2


def _schema_warning(container: DashboardContainer) -> None:
    """The page needs the ledger at the newest revision; say so now rather than on every refresh."""
    try:
        revision = current_revision(container.engine())
    except Exception as exc:  # unreachable now: the page will say so, and recover when it is back
        reason = type(exc).__name__
        log.warning("cannot read the schema revision yet (%s); the page will show the error", reason)
        return
    head = current_head()
    if revision != head:
        print(
            f"record-deleter: warning: the database schema is at {revision or 'nothing'}, not {head}; "
            "run `record-deleter db upgrade` or the page will show read errors",
            file=sys.stderr,
        )


def run_dashboard(container: DashboardContainer) -> int:
    """Serve until a signal; exit 2 (one line) when the address cannot be served."""
    settings = container.settings().dashboard
    stop = stop_on_signals(log, "stopping the dashboard")
    try:  # only what the page reads is built: the engine, on first use (no init_resources)
        server = container.server()
        try:
            port = server.start(settings.address, settings.port)
        except DashboardServerError as exc:
            print(f"record-deleter: {exc} (DASHBOARD_ADDRESS, DASHBOARD_PORT)", file=sys.stderr)
            return EXIT_BAD_SETTING
        _schema_warning(container)
        host = f"[{settings.address}]" if ":" in settings.address else settings.address
        print(f"record-deleter: dashboard on http://{host}:{port}/", file=sys.stderr, flush=True)
        stop.wait()
        server.stop()
        return EXIT_OK
    finally:
        container.shutdown_resources()
