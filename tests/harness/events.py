"""The worker's structured events, as the harness reads them.

With WORKER_LOG_FORMAT=json every line of the worker's stderr is one JSON object with `time`,
`level`, `logger` and `message`; an event the worker emits (`adapters/observability.py`,
LoggingEvents) adds `"event": NAME` and its fields. The harness reads a process's output as it is
written and stamps each event with the wall-clock time it arrived.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    at: float  # time.time() when the line was read
    name: str
    fields: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]


def parse(line: bytes, at: float) -> Event | None:
    """The event on `line`, or None for any other line (text logs, tracebacks, ...)."""
    if not line.startswith(b"{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        return None
    name = obj.pop("event")
    return Event(at, name, obj)


class EventLog:
    """Events of one or more processes, appended by reader threads, read by anyone."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def append(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def all(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def named(self, name: str) -> list[Event]:
        with self._lock:
            return [e for e in self._events if e.name == name]

    def count(self, name: str) -> int:
        return len(self.named(name))
