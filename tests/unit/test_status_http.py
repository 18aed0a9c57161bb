"""The worker's status endpoint: /metrics with the runtime collectors, /healthz, /readyz, 404."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from record_deleter.adapters.observability import PrometheusEvents
from record_deleter.adapters.status_http import StatusServer, StatusServerError

pytestmark = pytest.mark.unit


class Flags:
    def __init__(self) -> None:
        self.loop: str | None = None
        self.database: str | None = None
        self.database_calls = 0

    def check_database(self) -> str | None:
        self.database_calls += 1
        return self.database


@pytest.fixture
def served() -> Iterator[tuple[str, Flags, PrometheusEvents]]:
    flags, events = Flags(), PrometheusEvents()
    server = StatusServer(
        events.registry,
        live={"loop": lambda: flags.loop},
        ready={"database": flags.check_database, "partitions": lambda: None},
        cache_seconds=60,
    )
    port = server.start("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}", flags, events
    finally:
        server.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_metrics_carry_the_workers_counters_and_the_process_and_python_collectors(served) -> None:
    base, _, events = served
    events.emit("completion_published")
    status, text = get(f"{base}/metrics")
    assert status == 200
    assert "record_deleter_completions_published_total 1.0" in text
    for family in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info", "python_gc"):
        assert family in text, family


def test_liveness_follows_its_checks_at_once(served) -> None:
    base, flags, _ = served
    assert get(f"{base}/healthz") == (200, json.dumps({"status": "ok", "checks": {"loop": "ok"}}) + "\n")
    flags.loop = "the hand-off loop has not turned for 75s (limit 60s)"
    status, body = get(f"{base}/healthz")
    assert status == 503
    assert json.loads(body)["checks"]["loop"] == flags.loop


def test_readiness_names_the_failing_dependency_and_caches_its_checks(served) -> None:
    base, flags, _ = served
    assert get(f"{base}/readyz")[0] == 200
    flags.database = "RecordStoreUnavailable: database unavailable"
    assert get(f"{base}/readyz")[0] == 200, "within the cache period the last result stands"
    assert flags.database_calls == 1, "a probe does not hit the database every time"


def test_a_readiness_check_that_raises_is_a_failing_check_not_an_error() -> None:
    def broken() -> str | None:
        raise ConnectionRefusedError("connection refused")

    server = StatusServer(PrometheusEvents().registry, live={}, ready={"database": broken})
    port = server.start("127.0.0.1", 0)
    try:
        status, body = get(f"http://127.0.0.1:{port}/readyz")
    finally:
        server.stop()
    assert status == 503
    assert json.loads(body) == {
        "status": "fail",
        "checks": {"database": "ConnectionRefusedError: connection refused"},
    }


@pytest.mark.parametrize("path", ["/", "/metrics/extra", "/health", "/favicon.ico"])
def test_any_other_path_is_404(served, path: str) -> None:
    base, _, _ = served
    assert get(f"{base}{path}")[0] == 404


def test_an_address_in_use_is_one_clear_error(served) -> None:
    base, _, _ = served
    port = int(base.rsplit(":", 1)[1])
    with pytest.raises(StatusServerError, match=rf"cannot serve the status endpoint on 127.0.0.1:{port}: "):
        StatusServer(PrometheusEvents().registry, live={}, ready={}).start("127.0.0.1", port)


def test_the_consumer_lag_comes_from_librdkafkas_statistics_of_the_request_topic() -> None:
    """`record_deleter_consumer_lag_messages`: the held partitions' stored lag (-1 = unknown, and
    librdkafka's internal partition -1, are left out)."""
    from record_deleter.adapters.kafka import KafkaRequestSource

    source = KafkaRequestSource.__new__(KafkaRequestSource)  # the statistics callback alone
    source._topic, source._lag = "requests", None
    assert source.lag() is None
    stats = {
        "topics": {
            "requests": {
                "partitions": {
                    "0": {"consumer_lag_stored": 12},
                    "1": {"consumer_lag_stored": 30},
                    "2": {"consumer_lag_stored": -1},
                    "-1": {"consumer_lag_stored": 99},
                }
            },
            "other": {"partitions": {"0": {"consumer_lag_stored": 1000}}},
        }
    }
    source._on_stats(json.dumps(stats))
    assert source.lag() == 42
    source._on_stats("{not json")
    assert source.lag() == 42, "a statistics line that does not parse changes nothing"
