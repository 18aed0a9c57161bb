"""Observability port: the domain says what happened; adapters turn it into logs and metrics."""

from __future__ import annotations

from typing import Protocol


class Events(Protocol):
    """Receives named events with fields (record id, offset, counts, durations)."""

    def emit(self, event: str, **fields: object) -> None: ...


class NoEvents:
    """Discards every event (default when nothing observes the domain)."""

    def emit(self, event: str, **fields: object) -> None:
        return None
