"""How the long-running commands (`worker`, `dashboard`) learn to stop."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType


def stop_on_signals(log: logging.Logger, then: str) -> threading.Event:
    """An event that SIGTERM (a supervisor's stop) or SIGINT (Ctrl-C) sets; each is logged with
    what the command does `then` ("stopping after the current message")."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: %s", signal.Signals(signum).name, then)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop
