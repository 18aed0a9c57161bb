"""The dashboard's one JSON document: in flight, recent answers, throughput, workers.

Assembled from the ledger (`sql_dashboard`) and, when configured, the workers' own status
endpoints, at most once per `cache_seconds` whoever asks: ten open pages cost the database what
one does. A database that cannot be reached is reported in the document (`error`), not as an
HTTP error, so the page keeps showing what it showed last and says why it is stale.

Rows left are the one costly read (a `COUNT(*)` per plan table per record): counted only for the
in-flight records shown (at most DASHBOARD_IN_FLIGHT_LIMIT), each reused for
DASHBOARD_COUNT_CACHE_SECONDS (`RowsLeftCounter`).
"""

from __future__ import annotations

import dataclasses
import http.client
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..domain.errors import InvalidRecordId, RecordStoreUnavailable
from ..domain.evidence import RecordHistory
from ..domain.model import RecordId
from . import sql_dashboard as ledger
from .resonate_pending import PendingRequest

RowCounter = Callable[[RecordId], int]
STORE_ERRORS_METRIC = "record_deleter_store_errors_total"
RECENT_BUCKETS = 3  # "now" on the page: the last three buckets (30 s), the current one partly gone


@dataclasses.dataclass(frozen=True, slots=True)
class OverviewLimits:
    in_flight: int = 50  # records read and counted per refresh
    recent: int = 50
    window_seconds: int = 600
    bucket_seconds: int = 10
    running_seconds: float = 10.0  # a batch committed this recently: running; else waiting
    cache_seconds: float = 1.0
    refresh_seconds: float = 1.5  # how often the page asks (it reads it from the document)


def to_json(value: Any) -> Any:
    """Dataclasses, lists and datetimes as JSON values (datetimes as ISO 8601 in UTC)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def recent_rates(rates: ledger.Throughput, now: datetime, buckets: int) -> dict[str, float]:
    """Rows/s and records/s over the last `buckets` buckets, the current (unfinished) one included:
    a ten-minute average alone hides that deletion stopped a minute ago."""
    if not rates.buckets:
        return {"recent_rows_per_second": 0.0, "recent_records_per_second": 0.0, "recent_seconds": 0.0}
    start = rates.buckets[-buckets:][0]
    seconds = max(1.0, now.timestamp() - start)
    return {
        "recent_rows_per_second": sum(rates.rows[-buckets:]) / seconds,
        "recent_records_per_second": sum(rates.records[-buckets:]) / seconds,
        "recent_seconds": seconds,
    }


def probe_worker(url: str, timeout: float = 1.0) -> dict[str, Any]:
    """A worker's readiness (`/readyz`) and store errors so far (`/metrics`), from its status URL."""
    base = url.rstrip("/")
    out: dict[str, Any] = {"url": base, "ready": None, "checks": None, "store_errors": None}
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=timeout) as response:  # noqa: S310
            out["ready"] = response.status == 200
    except urllib.error.HTTPError as exc:
        out["ready"] = False
        out["checks"] = exc.read(2000).decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        out["checks"] = f"unreachable ({type(exc).__name__})"
        return out
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=timeout) as response:  # noqa: S310
            out["store_errors"] = store_errors(response.read(2_000_000).decode(errors="replace"))
    except (OSError, http.client.HTTPException, ValueError):
        pass  # readiness is shown; the count stays "—"
    return out


def store_errors(metrics_text: str) -> int | None:
    """The value of `record_deleter_store_errors_total` in a Prometheus text exposition."""
    for line in metrics_text.splitlines():
        if line.startswith(STORE_ERRORS_METRIC + " "):
            return int(float(line.split()[1]))
    return None


class RowsLeftCounter:
    """Counts in-flight records' remaining rows in the plan's tables, each at most once per `ttl`."""

    def __init__(self, count: RowCounter, ttl: float) -> None:
        self._count, self._ttl = count, ttl
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, int | None]] = {}

    def __call__(self, record_id: str) -> int | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(record_id)
            if hit is not None and now - hit[0] < self._ttl:
                return hit[1]
        value = self._fresh(record_id)
        with self._lock:
            self._cache[record_id] = (now, value)
            if len(self._cache) > 1000:  # forget records no longer asked about
                self._cache = {k: v for k, v in self._cache.items() if now - v[0] < self._ttl}
        return value

    def _fresh(self, record_id: str) -> int | None:
        if ledger.HASHED_ID.fullmatch(record_id):
            return None  # the ledger holds a hash: the application's rows are keyed by the id itself
        try:
            return self._count(RecordId(record_id))
        except (RecordStoreUnavailable, InvalidRecordId):
            return None


def history_document(find: Callable[[str], RecordHistory | None], query: str) -> dict[str, Any]:
    """The search box's answer: one record's whole history as `record-deleter evidence` reads it
    (`EvidenceArchive.find_history`: the id, or a hashed id as the ledger or a log line shows
    it), laid out as four tables (requests, attempts, answers, batches), with the audit chain's
    verdict. A malformed or ambiguous id is an `error`, not an exception."""
    try:
        found = find(query.strip())
    except InvalidRecordId as exc:
        return {"query": query, "error": str(exc)}
    if found is None:
        empty: list[Any] = []
        return {
            "query": query,
            "chain": None,
            "requests": empty,
            "attempts": [],
            "answers": [],
            "batches": [],
        }
    shown = ledger.shown_id(found.record_id)

    def rows(items: Any) -> list[dict[str, Any]]:
        return [{"shown_id": shown, **to_json(item)} for item in items]

    attempts = found.attempts
    summary = [{k: v for k, v in to_json(a).items() if k not in _NESTED} for a in attempts]
    return {
        "query": query,
        "chain": {"intact": found.chain.intact, "summary": found.chain.summary()},
        "requests": rows(r for a in attempts for r in a.requests),
        "attempts": [{"shown_id": shown, **a} for a in summary],
        "answers": rows(x for a in attempts for x in a.answers),
        "batches": rows(b for a in attempts for b in a.batch_rows),
    }


_NESTED = ("requests", "batch_rows", "answers")  # an attempt's own rows, shown as tables of their own


class DashboardOverview:
    """Builds the overview document; thread-safe, cached for `limits.cache_seconds`."""

    def __init__(
        self,
        engine: Engine,
        rows_left: Callable[[str], int | None],
        limits: OverviewLimits,
        worker_urls: Sequence[str] = (),
        probe: Callable[[str], dict[str, Any]] = probe_worker,
        pending: Callable[[], list[PendingRequest]] | None = None,
    ) -> None:
        self._engine, self._rows_left, self._limits = engine, rows_left, limits
        self._pending = pending
        self._worker_urls, self._probe = tuple(worker_urls), probe
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._document: dict[str, Any] = {}

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            if time.monotonic() - self._at >= self._limits.cache_seconds:
                self._document = self._build()
                self._at = time.monotonic()
            return self._document

    def _build(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        document: dict[str, Any] = {
            "now": now.isoformat(),
            "error": None,
            "refresh_seconds": self._limits.refresh_seconds,
        }
        try:
            document.update(self._ledger(now))
            document["not_joined"] = self._not_joined(now)
        except SQLAlchemyError as exc:
            document["error"] = f"the database cannot be read ({type(exc).__name__}); showing nothing new"
        document["workers"] = [self._probe(url) for url in self._worker_urls]
        return document

    def _not_joined(self, now: datetime) -> dict[str, Any] | None:
        """Request workflows pending on the Resonate server that the ledger does not hold yet."""
        if self._pending is None:
            return None
        try:
            pending = self._pending()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            return {"error": f"the Resonate server cannot be read ({type(exc).__name__})", "requests": []}
        with self._engine.connect() as conn:
            joined = ledger.joined_request_keys(conn, [p.key for p in pending])
        waiting = [p for p in pending if p.key not in joined]
        rows = [
            {**to_json(p), "age_seconds": (now - p.created_at).total_seconds() if p.created_at else None}
            for p in waiting[: self._limits.recent]
        ]
        return {"error": None, "count": len(waiting), "requests": rows}

    def _ledger(self, now: datetime) -> dict[str, Any]:
        limits = self._limits
        with self._engine.connect() as conn:
            running = ledger.in_flight(conn, limits.in_flight)
            count, oldest = ledger.in_flight_summary(conn)
            answers = ledger.recent_answers(conn, limits.recent)
            rates = ledger.throughput(conn, limits.window_seconds, limits.bucket_seconds)
        rows = [self._in_flight_row(r, now) for r in running]
        return {
            "in_flight": rows,
            "in_flight_count": count,
            "in_flight_shown": len(rows),
            "oldest_in_flight": oldest.isoformat() if oldest else None,
            "oldest_in_flight_seconds": (now - oldest).total_seconds() if oldest else None,
            "answers": to_json(answers),
            "throughput": {
                **to_json(rates),
                "rows_per_second": sum(rates.rows) / limits.window_seconds,
                "records_per_second": sum(rates.records) / limits.window_seconds,
                "window_seconds": limits.window_seconds,
                **recent_rates(rates, now, RECENT_BUCKETS),
            },
        }

    def _in_flight_row(self, record: ledger.InFlight, now: datetime) -> dict[str, Any]:
        recent = record.last_batch_at or record.started_at
        idle = (now - recent).total_seconds()
        row: dict[str, Any] = to_json(record)
        row["rows_left"] = self._rows_left(record.record_id)
        row["age_seconds"] = (now - record.started_at).total_seconds()
        row["idle_seconds"] = idle
        row["status"] = "running" if idle <= self._limits.running_seconds else "waiting"
        return row
