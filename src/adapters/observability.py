"""Events → structured logs and Prometheus metrics."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..domain.events import Events
from .evidence_chain import log_id
from .status_http import add_runtime_collectors

log = logging.getLogger("record_deleter.events")


# Trouble an operator must see.
WARNING_EVENTS = frozenset(
    {
        "retrying",
        "dead_lettered",
        "failure_published",
        "step_cut_short",
        "store_error",
        "attempt_failed",
        "answer_not_recorded",
    }
)
# Per message polled, per join and per SQL batch: thousands a second under load, and counted by the metrics;
# a line for each would make the log the bottleneck (the handler's lock serializes the threads).
DEBUG_EVENTS = frozenset({"consumed", "joined", "batch_deleted"})


class RepeatFilter(logging.Filter):
    """Lets a line that repeats (same logger, level and text: a broker or server that stays
    unreachable) through once per `window_seconds`; the next one after the window says how many
    were held back. The worker's events are never held back (they are counted, and the fields
    that tell them apart are not in their text)."""

    def __init__(self, window_seconds: float, max_keys: int = 1000) -> None:
        super().__init__()
        self._window, self._max_keys = window_seconds, max_keys
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == log.name or record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = time.monotonic()
        with self._lock:
            since, held = self._seen.get(key, (-float("inf"), 0))
            if now - since < self._window:
                self._seen[key] = (since, held + 1)
                return False
            if len(self._seen) >= self._max_keys:
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self._window}
            self._seen[key] = (now, 0)
        if held:
            record.msg, record.args = f"{key[2]} (and {held} more like it in {self._window:.0f}s)", ()
        return True


def hash_record_id(key: bytes, record_id: str) -> str:
    """How a record id is logged with WORKER_LOG_RECORD_IDS=hashed: the first 16 hex digits of
    HMAC-SHA256(key, id) — the same on every line and every worker sharing the key, so one record
    can be followed, and not recomputable from a guessed id without the key. A hashed ledger
    (AUDIT_RECORD_IDS=hashed) stores the whole HMAC: one function makes both (`log_id`)."""
    return log_id(key, record_id)


# A poison message's reason quotes the value it refused ("got int 42"): a value, maybe an id.
_QUOTED_VALUE = re.compile(r"\b(got \w+) .*$")


class LoggingEvents(Events):
    """One line per event: `event key=value ...`, or one JSON object per line.

    At INFO a record leaves `handed_off` (with its offset), a `step_deleted` per checkpointed
    delete step and `completion_published`; DEBUG adds every poll and every SQL batch.

    With `hash_key`, no line carries a record id in clear: `record_id` is `hash_record_id`'s
    digest, the id is replaced by it inside an `error` or `reason`, and a refused value a poison
    message's reason quotes is left out."""

    def __init__(
        self, *, json_lines: bool = False, level: int = logging.INFO, hash_key: bytes | None = None
    ) -> None:
        self._json = json_lines
        self._level = level
        self._hash_key = hash_key

    def _hashed(self, fields: dict[str, object]) -> dict[str, object]:
        assert self._hash_key is not None
        record_id = fields.get("record_id")
        digest = hash_record_id(self._hash_key, record_id) if isinstance(record_id, str) else None
        out = dict(fields)
        if digest is not None:
            out["record_id"] = digest
        for name in ("error", "reason"):
            text = out.get(name)
            if isinstance(text, str):
                if digest is not None and isinstance(record_id, str) and record_id:
                    text = text.replace(record_id, digest)
                out[name] = _QUOTED_VALUE.sub(r"\1 (value not logged)", text)
        return out

    def emit(self, event: str, **fields: object) -> None:
        if event in WARNING_EVENTS:
            level = logging.WARNING
        elif event in DEBUG_EVENTS:
            level = logging.DEBUG
        else:
            level = self._level
        if not log.isEnabledFor(level):
            return
        if self._hash_key is not None:
            fields = self._hashed(fields)
        if self._json:  # the handler's JSON formatter writes the fields next to time, level, logger
            log.log(level, event, extra={"event": event, **fields})
        else:
            log.log(level, "%s %s", event, " ".join(f"{k}={v}" for k, v in fields.items()))


class PrometheusEvents(Events):
    """Counters and a hand-off latency histogram in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None, in_flight: object = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        if registry is None:
            add_runtime_collectors(r)
        self.consumed = Counter("record_deleter_messages_consumed", "Request messages polled", registry=r)
        self.handed_off = Counter(
            "record_deleter_messages_handed_off", "Workflows durably created", registry=r
        )
        self.dead_lettered = Counter("record_deleter_messages_dead_lettered", "Poison messages", registry=r)
        self.duplicates = Counter(
            "record_deleter_messages_duplicate", "Requests whose workflow already existed", registry=r
        )
        self.retries = Counter("record_deleter_handoff_retries", "Hand-off retries", ["what"], registry=r)
        self.batches = Counter("record_deleter_batches_deleted", "Delete batches executed", registry=r)
        self.rows = Counter("record_deleter_rows_deleted", "Rows deleted", registry=r)
        self.completions = Counter(
            "record_deleter_completions_published", "Completions published", registry=r
        )
        self.failures = Counter("record_deleter_failures_published", "Failures published", registry=r)
        self.store_errors = Counter(
            "record_deleter_store_errors",
            "Delete steps that met a database error and will retry (records waiting, not failed)",
            registry=r,
        )
        self.attempts_failed = Counter(
            "record_deleter_attempts_failed", "Deletion attempts ended by a permanent error", registry=r
        )
        self.latency = Histogram(
            "record_deleter_handoff_seconds",
            "Time from poll to durable hand-off",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.in_flight = Gauge(
            "record_deleter_workflows_in_flight", "Workflows started here, not done", registry=r
        )
        self.paused = Gauge("record_deleter_consumer_paused", "1 while at the in-flight bound", registry=r)
        self.oldest_in_flight = Gauge(
            "record_deleter_oldest_in_flight_seconds",
            "Age of the oldest workflow started here and not done (0 with none)",
            registry=r,
        )
        self.lag = Gauge(
            "record_deleter_consumer_lag_messages",
            "Request messages of the held partitions not handed off yet (NaN until known)",
            registry=r,
        )

    def emit(self, event: str, **fields: object) -> None:
        match event:
            case "consumed":
                self.consumed.inc()
            case "handed_off":
                self.handed_off.inc()
                seconds = fields.get("seconds")
                if isinstance(seconds, float):
                    self.latency.observe(seconds)
            case "dead_lettered":
                self.dead_lettered.inc()
            case "duplicate":
                self.duplicates.inc()
            case "retrying":
                self.retries.labels(str(fields.get("what", ""))).inc()
            case "batch_deleted":
                self.batches.inc()
                rows = fields.get("rows")
                if isinstance(rows, int):
                    self.rows.inc(rows)
            case "completion_published":
                self.completions.inc()
            case "failure_published":
                self.failures.inc()
            case "store_error":
                self.store_errors.inc()
            case "attempt_failed":
                self.attempts_failed.inc()
            case "paused":
                self.paused.set(1)
            case "resumed":
                self.paused.set(0)
            case _:
                pass


class FanOutEvents(Events):
    def __init__(self, sinks: Iterable[Events]) -> None:
        self._sinks = tuple(sinks)

    def emit(self, event: str, **fields: object) -> None:
        for sink in self._sinks:
            sink.emit(event, **fields)
