"""Shared plumbing of the benchmark suite: endpoints, topics, databases, worker processes, stats.

Everything talks to the real services named by the environment (`scripts/services.sh` writes
them): KAFKA_BOOTSTRAP_SERVERS, RESONATE_URL + RESONATE_MESSAGE_SOURCE_PORT, DATABASE_URL_POSTGRES.
Nothing here is imported by the project itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


# ------------------------------------------------------------------------------------------ basics
def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return statistics.median(vals) if vals else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def wait_until(condition: Any, timeout: float, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or condition}")
        time.sleep(interval)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -------------------------------------------------------------------------------------- endpoints
@dataclass(frozen=True)
class Endpoints:
    kafka: str
    resonate_url: str
    resonate_poll_port: str
    postgres: str | None
    resonate_pid: int | None = None  # a scratch server of this run (see benchmarks.run)
    resonate_dir: Path | None = None

    def service_pids(self) -> dict[str, int]:
        pids = service_pids()
        if self.resonate_pid:
            pids["resonate"] = self.resonate_pid
        return pids

    def resonate_store(self) -> Path | None:
        if self.resonate_dir is not None:
            return self.resonate_dir / "resonate" / "resonate.db"
        svc = os.environ.get("RECORD_DELETER_SERVICES_DIR")
        return Path(svc, "resonate", "resonate.db") if svc else None

    @classmethod
    def from_env(cls) -> Endpoints:
        missing = [
            v
            for v in ("KAFKA_BOOTSTRAP_SERVERS", "RESONATE_URL", "RESONATE_MESSAGE_SOURCE_PORT")
            if not os.environ.get(v)
        ]
        if missing:
            raise SystemExit(
                f"benchmarks need real services; set {', '.join(missing)} (scripts/bench.sh provisions them)"
            )
        return cls(
            kafka=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            resonate_url=os.environ["RESONATE_URL"].rstrip("/"),
            resonate_poll_port=os.environ["RESONATE_MESSAGE_SOURCE_PORT"],
            postgres=os.environ.get("DATABASE_URL_POSTGRES") or None,
        )

    @property
    def resonate_host(self) -> str:
        return self.resonate_url.rpartition(":")[0]

    @property
    def resonate_port(self) -> str:
        return self.resonate_url.rpartition(":")[2]


# ------------------------------------------------------------------------------------------ kafka
@dataclass
class Topics:
    request: str
    completion: str
    failure: str
    dead_letter: str

    @classmethod
    def fresh(cls, tag: str) -> Topics:
        u = unique(f"bench-{tag}-")
        return cls(f"{u}-req", f"{u}-done", f"{u}-failed", f"{u}-dlq")

    def names(self) -> list[str]:
        return [self.request, self.completion, self.failure, self.dead_letter]

    def env(self) -> dict[str, str]:
        return {
            "BROKER_REQUEST_TOPIC": self.request,
            "BROKER_COMPLETION_TOPIC": self.completion,
            "BROKER_FAILURE_TOPIC": self.failure,
            "BROKER_DEAD_LETTER_TOPIC": self.dead_letter,
        }


def create_topics(bootstrap: str, topics: Topics, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    sizes = {
        topics.request: partitions,
        topics.completion: partitions,
        topics.failure: 1,
        topics.dead_letter: 1,
    }
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in sizes.items()]
    )
    for f in futures.values():
        f.result(30)


def delete_topics(bootstrap: str, topics: Topics) -> None:
    from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.delete_topics(topics.names(), operation_timeout=30).values():
        with contextlib.suppress(Exception):
            f.result(30)


def produce_requests(bootstrap: str, topic: str, ids: Sequence[str]) -> tuple[float, float]:
    """Produce one request per id (reference format: a JSON string), flushed; returns (wall, mono) start."""
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "queue.buffering.max.messages": 1_000_000}
    )
    wall, mono = time.time(), time.monotonic()
    for rid in ids:
        producer.produce(topic, value=json.dumps(rid).encode(), key=rid.encode())
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(f"{remaining} requests not delivered to {topic}")
    return wall, mono


@dataclass(frozen=True)
class Completed:
    record_id: str
    ts_ms: int
    rows: int
    batches: int


def read_completions(
    bootstrap: str, topic: str, expect: int, timeout: float = 60.0, wanted: set[str] | None = None
) -> list[Completed]:
    """Read completions from the start until `expect` distinct record ids (of `wanted`) were seen."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("bench-reader-"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen: dict[str, Completed] = {}
    deadline = time.monotonic() + timeout
    try:
        while sum(1 for r in seen if wanted is None or r in wanted) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.5):
                if msg.error():
                    continue
                value = json.loads(msg.value() or b"null")
                rid = value[0] if isinstance(value, list) else str(value)
                headers = dict(msg.headers() or [])
                ts = msg.timestamp()[1]
                if rid not in seen or ts < seen[rid].ts_ms:
                    seen[rid] = Completed(
                        rid,
                        ts,
                        int(headers.get("rows-deleted", b"-1") or -1),
                        int(headers.get("batches", b"-1") or -1),
                    )
    finally:
        consumer.close()
    return list(seen.values())


def raw_consume_rate(bootstrap: str, topic: str, expect: int) -> float:
    """Messages/s of a plain confluent_kafka Consumer reading `topic` from the start (poll per message)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("bench-raw-"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    n = 0
    first: float | None = None
    deadline = time.monotonic() + 120
    try:
        while n < expect and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            if first is None:
                first = time.monotonic()
            n += 1
        end = time.monotonic()
    finally:
        consumer.close()
    if first is None or n < expect:
        raise RuntimeError(f"raw consumer read {n}/{expect} messages of {topic}")
    # the first message's wait (group join, fetch) is not consume rate: count n-1 intervals
    return (n - 1) / max(end - first, 1e-9)


# --------------------------------------------------------------------------------------- database
@dataclass
class Database:
    """A fresh database per scenario: a SQLite file, or a new PostgreSQL database (dropped after)."""

    kind: str  # sqlite | postgres
    url: str
    _admin_url: str | None = None
    _name: str | None = None
    _dir: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def create(cls, kind: str, endpoints: Endpoints) -> Database:
        from record_deleter.adapters.sql_migrations import prepare_demo_database

        if kind == "sqlite":
            tmp = tempfile.TemporaryDirectory(prefix="rd-bench-")
            db = cls("sqlite", f"sqlite:///{tmp.name}/bench.db", _dir=tmp)
        elif kind == "postgres":
            if not endpoints.postgres:
                raise SystemExit("PostgreSQL benchmarks need DATABASE_URL_POSTGRES")
            from sqlalchemy import create_engine, text
            from sqlalchemy.engine import make_url

            name = unique("bench_").replace("-", "_")
            admin = create_engine(endpoints.postgres, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
            url = make_url(endpoints.postgres).set(database=name).render_as_string(hide_password=False)
            db = cls("postgres", url, _admin_url=endpoints.postgres, _name=name)
        else:
            raise ValueError(kind)
        prepare_demo_database(db.url)
        return db

    def engine(self) -> Any:
        from record_deleter.adapters.sql_engine import make_engine

        return make_engine(self.url)

    def seed_many(self, prefix: str, n: int, rows_each: int) -> list[str]:
        """Records prefix000001..prefixNNNNNN with `rows_each` rows each, contiguous per record."""
        from sqlalchemy import text

        ids = [f"{prefix}{i:06d}" for i in range(1, n + 1)]
        engine = self.engine()
        with engine.begin() as conn:
            if self.kind == "postgres":
                conn.execute(
                    text(
                        "INSERT INTO records (id) "
                        "SELECT :p || lpad(g::text, 6, '0') FROM generate_series(1, :n) g"
                    ),
                    {"p": prefix, "n": n},
                )
                if rows_each:
                    conn.execute(
                        text(
                            "INSERT INTO record_rows (record_id, payload) "
                            "SELECT :p || lpad(r::text, 6, '0'), 'row ' || k "
                            "FROM generate_series(1, :n) r, generate_series(1, :k) k ORDER BY r, k"
                        ),
                        {"p": prefix, "n": n, "k": rows_each},
                    )
            else:
                conn.execute(
                    text(
                        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
                        "INSERT INTO records (id, created_at) "
                        "SELECT printf('%s%06d', :p, x), CURRENT_TIMESTAMP FROM c"
                    ),
                    {"p": prefix, "n": n},
                )
                if rows_each:
                    conn.execute(
                        text(
                            "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < :n), "
                            "k(y) AS (SELECT 1 UNION ALL SELECT y + 1 FROM k WHERE y < :k) "
                            "INSERT INTO record_rows (record_id, payload) "
                            "SELECT printf('%s%06d', :p, x), 'row ' || y FROM r, k ORDER BY x, y"
                        ),
                        {"p": prefix, "n": n, "k": rows_each},
                    )
        if self.kind == "postgres":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE records"))
                conn.execute(text("ANALYZE record_rows"))
        engine.dispose()
        return ids

    def seed_one(self, record_id: str, rows: int) -> None:
        from sqlalchemy import text

        engine = self.engine()
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO records (id) VALUES (:id)"), {"id": record_id})
            if self.kind == "postgres":
                conn.execute(
                    text(
                        "INSERT INTO record_rows (record_id, payload) "
                        "SELECT :id, 'row ' || g FROM generate_series(1, :n) g"
                    ),
                    {"id": record_id, "n": rows},
                )
            else:
                conn.execute(
                    text(
                        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
                        "INSERT INTO record_rows (record_id, payload) SELECT :id, 'row ' || x FROM c"
                    ),
                    {"id": record_id, "n": rows},
                )
        if self.kind == "postgres":
            # VACUUM: every subject starts from the same table state, without the dead tuples of
            # the subjects before it (which its index scans would otherwise wade through) and
            # with the new rows' hint bits set (which its first scan would otherwise write).
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE record_rows"))
        engine.dispose()

    def rows_left(self, prefix: str) -> int:
        from sqlalchemy import text

        engine = self.engine()
        with engine.connect() as conn:
            n = conn.execute(
                text("SELECT count(*) FROM record_rows WHERE record_id LIKE :p"), {"p": prefix + "%"}
            ).scalar_one()
        engine.dispose()
        return int(n)

    def drop(self) -> None:
        if self._dir is not None:
            self._dir.cleanup()
        if self._admin_url and self._name:
            from sqlalchemy import create_engine, text
            from sqlalchemy.exc import SQLAlchemyError

            admin = create_engine(self._admin_url, isolation_level="AUTOCOMMIT")
            # An autovacuum worker (a superuser's process, which this role may not terminate) can
            # hold the database right after a big DELETE: retry, then leave it to the cluster's end.
            for attempt in range(10):
                try:
                    with admin.connect() as conn:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)'))
                    break
                except SQLAlchemyError as exc:
                    if attempt == 9:
                        log(f"could not drop database {self._name} (left in place): {exc}".splitlines()[0])
                    time.sleep(1)
            admin.dispose()


@contextlib.contextmanager
def database(kind: str, endpoints: Endpoints) -> Iterator[Database]:
    db = Database.create(kind, endpoints)
    try:
        yield db
    finally:
        db.drop()


# ------------------------------------------------------------------------------- resonate server
def cancel_pending(resonate_url: str, promise_ids: Sequence[str], threads: int = 4) -> int:
    """Cancel (REJECTED_CANCELED) root promises a killed run left pending, so the server does not
    keep re-dispatching their tasks to a group nobody polls (measured: ~7% of a core for 4k
    orphans) and skew later measurements. Completed ones are left as they are."""
    import requests

    chunks = [promise_ids[i::threads] for i in range(threads)]
    done = [0] * threads

    def work(k: int) -> None:
        with requests.Session() as s:
            for pid in chunks[k]:
                with contextlib.suppress(requests.RequestException):
                    r = s.patch(
                        f"{resonate_url}/promises/{pid}",
                        json={"state": "REJECTED_CANCELED", "value": {}},
                        headers={"strict": "False"},
                        timeout=10,
                    )
                    done[k] += r.status_code < 300

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(done)


def id_patterns(ids: Sequence[str]) -> list[str]:
    """Search patterns (`prefix*`) covering `ids` (a run's ids share a few prefixes)."""
    return sorted({i.rstrip("0123456789") + "*" for i in ids})


def any_pending(resonate_url: str, patterns: Sequence[str]) -> bool:
    """Is any promise matching the patterns (roots and their steps) still pending on the server?"""
    import requests

    for pattern in patterns:
        try:
            r = requests.get(
                f"{resonate_url}/promises", params={"id": pattern, "state": "pending", "limit": 1}, timeout=10
            )
            if r.status_code < 300 and r.json().get("promises"):
                return True
        except (requests.RequestException, ValueError):
            return True
    return False


# ---------------------------------------------------------------------------------------- workers
def base_env() -> dict[str, str]:
    """The environment minus every project setting, so a run sees only what it sets."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BROKER_", "WORKFLOW_", "WORKER_", "DATABASE_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def worker_env(
    endpoints: Endpoints,
    topics: Topics,
    db_url: str,
    *,
    group: str,
    resonate_group: str,
    partitions: int = 4,
    batch_size: int = 1000,
    pause: float = 0.0,
    max_in_flight: int | None = None,
    handoff_concurrency: int | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    env = base_env()
    env.update(
        BROKER_KIND="kafka",
        BROKER_BOOTSTRAP_SERVERS=endpoints.kafka,
        BROKER_PARTITIONS=str(partitions),
        BROKER_GROUP=group,
        DATABASE_URL=db_url,
        RESONATE_MODE="remote",
        RESONATE_URL=endpoints.resonate_url,
        RESONATE_MESSAGE_SOURCE_PORT=endpoints.resonate_poll_port,
        RESONATE_GROUP=resonate_group,
        WORKFLOW_BATCH_SIZE=str(batch_size),
        WORKFLOW_PAUSE_SECONDS=str(pause),
        **topics.env(),
    )
    if max_in_flight is not None:
        env["WORKER_MAX_IN_FLIGHT"] = str(max_in_flight)
    env["WORKER_LOG_FORMAT"] = "text"  # the harness reads event times from the log
    env["WORKER_LOG_LEVEL"] = "INFO"
    if handoff_concurrency is not None:
        env["WORKER_HANDOFF_CONCURRENCY"] = str(handoff_concurrency)
    env.update(extra or {})
    return env


def handoff_concurrency_support() -> tuple[bool, int | None]:
    """(does the tree have WORKER_HANDOFF_CONCURRENCY, its default) — measured as found."""
    try:
        from record_deleter.entrypoints.settings import WorkerSettings

        fields = WorkerSettings.model_fields
        for name in ("handoff_concurrency", "concurrency"):
            if name in fields:
                default = fields[name].default
                return True, int(default) if isinstance(default, int) else None
    except Exception:
        pass
    return False, None


# ------------------------------------------------------------------------------ CPU accounting
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, own utime+stime ticks, reaped children's cutime+cstime ticks) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data.rsplit(")", 1)[1].split()
    # fields after the comm: state ppid ... utime(12) stime(13) cutime(14) cstime(15) (0-based in rest)
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process, its live descendants and its reaped children."""
    stats: dict[int, tuple[int, int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                stats[int(entry)] = st
    if root not in stats:
        return float("nan")
    children: dict[int, list[int]] = {}
    for pid, (ppid, _own, _reaped) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = stats[root][2], [root]
    while stack:
        pid = stack.pop()
        total += stats[pid][1]
        stack.extend(children.get(pid, []))
    return total / _TICK


def service_pids() -> dict[str, int]:
    """PIDs of the services scripts/services.sh started for this run (none when they are external)."""
    svc = os.environ.get("RECORD_DELETER_SERVICES_DIR")
    out: dict[str, int] = {}
    if not svc:
        return out
    for name in ("kafka", "resonate", "postgres"):
        with contextlib.suppress(OSError, ValueError):
            out[name] = int(Path(svc, f"{name}.pid").read_text().strip())
    return out


class CpuMeter:
    """CPU seconds used by each of the services, the given processes and this harness in a window."""

    def __init__(self, procs: dict[str, int], services: dict[str, int] | None = None) -> None:
        self.pids = {**(service_pids() if services is None else services), **procs}
        self.start = self._sample()

    def _sample(self) -> dict[str, float]:
        out = {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF)
        out["harness"] = ru.ru_utime + ru.ru_stime
        out["wall"] = time.monotonic()
        return out

    def stop(self) -> dict[str, float]:
        end = self._sample()
        return {k: end[k] - self.start[k] for k in end if k in self.start}


_METRIC = re.compile(r"^(record_deleter_[a-z_]+?)(?:_total)?(?:\{[^}]*\})? ([0-9.eE+-]+)$", re.M)


@dataclass
class WorkerProcess:
    """A `record-deleter worker` subprocess with its Prometheus endpoint."""

    env: dict[str, str]
    log_path: Path
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    peak_rss_kb: int = 0

    def start(self) -> WorkerProcess:
        env = dict(self.env, WORKER_METRICS_PORT=str(self.metrics_port))
        self._out = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [PY, "-m", "record_deleter.entrypoints.cli", "worker"],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        return self

    _log_pos: int = 0
    _partial: bytes = b""
    handed_ts: list[float] = field(default_factory=list)
    completed_ts: list[float] = field(default_factory=list)

    def scan_log(self) -> None:
        """Read the log written since the last scan: wall-clock times of `handed_off` and
        `completion_published` events (text log format, millisecond timestamps). The worker
        writes these lines anyway, so counting them costs the measured process nothing."""
        with self.log_path.open("rb") as f:
            f.seek(self._log_pos)
            chunk = f.read()
        self._log_pos += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if b" handed_off " in line:
                self.handed_ts.append(_log_time(line))
            elif b" completion_published " in line:
                self.completed_ts.append(_log_time(line))

    def assignment(self) -> list[int] | None:
        text = self.log_path.read_text(errors="replace")
        lines = [line for line in text.splitlines() if "assigned partitions" in line]
        return json.loads(lines[-1].split("assigned partitions ", 1)[1]) if lines else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for name, value in _METRIC.findall(text):
            out[name] = out.get(name, 0.0) + float(value)
        return out

    def sample_rss(self) -> int:
        """Peak RSS so far (VmHWM, kB); remembered, since /proc is gone once the process exits."""
        if self.proc is not None:
            with contextlib.suppress(OSError), open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))
        return self.peak_rss_kb

    def stop(self, *, kill: bool = False, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        self.sample_rss()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
        return self.proc.returncode

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


def _log_time(line: bytes) -> float:
    """Epoch seconds of a `2026-01-01 12:00:00,123 LEVEL ...` log line (local time, as logging writes)."""
    from datetime import datetime

    try:
        return datetime.strptime(line[:23].decode(), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return time.time()


def wait_group_ready(workers: Sequence[WorkerProcess], partitions: int, timeout: float = 90.0) -> None:
    """Every worker has a share of the partitions (all of them together), and metrics answer."""

    def ready() -> bool:
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"worker exited during start-up:\n{w.tail()}")
        shares = [w.assignment() for w in workers]
        if any(s is None or len(s) == 0 for s in shares):
            return False
        if sum(len(s or []) for s in shares) != partitions:
            return False
        return all(w.metrics() for w in workers)

    wait_until(ready, timeout, 0.1, "workers assigned partitions")
    time.sleep(0.3)  # let a trailing rebalance settle
    wait_until(ready, timeout, 0.1, "workers assigned partitions")


def sum_metric(workers: Sequence[WorkerProcess], name: str) -> float:
    return sum(w.metrics().get(name, 0.0) for w in workers)


# ----------------------------------------------------------------------------------- child runs
def run_child(
    scenario: str, args: dict[str, Any], timeout: float = 600.0, env: dict[str, str] | None = None
) -> Any:
    """Run `python -m benchmarks.child SCENARIO JSON` and return its RESULT line (JSON)."""
    proc = subprocess.run(
        [PY, "-m", "benchmarks.child", scenario, json.dumps(args)],
        cwd=ROOT,
        env=env or base_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"child {scenario} exited {proc.returncode} without a result:\n{proc.stderr[-4000:]}")


class ChildProcess:
    """A long-running child scenario (started, then fed by the harness), e.g. the reference worker."""

    def __init__(self, scenario: str, args: dict[str, Any], log_path: Path) -> None:
        self._out = log_path.open("wb")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [PY, "-m", "benchmarks.child", scenario, json.dumps(args)],
            cwd=ROOT,
            env=base_env(),
            stdout=subprocess.PIPE,
            stderr=self._out,
        )
        self.peak_rss_kb = 0

    def wait_line(self, prefix: str, timeout: float) -> str:
        assert self.proc.stdout is not None
        result: list[str] = []

        def reader() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").strip()
                if line.startswith(prefix):
                    result.append(line)
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        if not result:
            self.kill()
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"child did not print {prefix!r} within {timeout:.0f}s:\n{tail}")
        return result[0]

    def sample_rss(self) -> int:
        with contextlib.suppress(OSError), open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))
        return self.peak_rss_kb

    def kill(self) -> None:
        self.sample_rss()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()
