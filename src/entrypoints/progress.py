"""Progress lines on stderr for long-running commands (at most a few per second)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, what: str, total: int, *, interval: float = 0.5) -> None:
        self._what = what
        self._total = total
        self._interval = interval
        self._last = 0.0
        self._started = time.monotonic()
        self._tty = sys.stderr.isatty()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if done < self._total and now - self._last < self._interval:
            return
        self._last = now
        pct = 100 * done / self._total if self._total else 100
        rate = done / max(now - self._started, 1e-9)
        line = f"{self._what}: {done}/{self._total} ({pct:.0f}%, {rate:,.0f}/s)"
        if self._tty:
            end = "\n" if done >= self._total else ""
            sys.stderr.write(f"\r{line}{end}")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
