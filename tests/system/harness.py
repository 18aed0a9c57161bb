"""Harness for the failure-mode system tests: an isolated deployment on the shared services, a
supervisor that keeps worker processes running (and counts every exit), service outages, and
the bookkeeping that turns a run into figures (lost, duplicates, re-executed batches).

Each test builds its own `Deployment` (unique topics, consumer group, Resonate group and record-id
prefix), so tests never see each other's traffic on the shared Kafka / Resonate / PostgreSQL.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from sqlalchemy import Engine, text

from record_deleter.adapters.sql_engine import make_engine
from record_deleter.adapters.sql_migrations import prepare_demo_database
from record_deleter.adapters.sql_store import SqlRecordStore
from record_deleter.domain.messages import encode_request
from record_deleter.domain.model import RecordId
from tests.support import (
    ROOT,
    Read,
    cli_env,
    committed_lag,
    create_topics,
    kafka_bootstrap,
    postgres_url,
    resonate_endpoint,
    unique,
)

WORKER_COMMAND = ("-m", "record_deleter.entrypoints.cli", "worker")
FAULT_WORKER_COMMAND = ("-m", "tests.system.fault_worker")


# ------------------------------------------------------------------------------------ deployment
@dataclass(frozen=True)
class Record:
    """A seeded record: its id, its `record_rows` count and the delete batches it needs."""

    id: str
    rows: int
    batch_size: int

    @property
    def needed(self) -> int:
        """Batches that delete its rows plus its `records` row (a batch takes `batch_size` in all)."""
        return math.ceil((self.rows + 1) / self.batch_size)


@dataclass
class Deployment:
    """One isolated record-deleter deployment on the shared real services."""

    tmp: Path
    bootstrap: str
    db_url: str
    prefix: str
    group: str
    topics: dict[str, str]
    partitions: int
    batch_size: int
    env: dict[str, str]
    engine: Engine

    @classmethod
    def create(
        cls, tmp: Path, name: str, *, partitions: int = 3, batch_size: int = 10, **settings: str
    ) -> Deployment:
        bootstrap = kafka_bootstrap()
        resonate_url, poll_port = resonate_endpoint()
        db_url = postgres_url()
        topics = {
            "BROKER_REQUEST_TOPIC": unique(f"{name}-req"),
            "BROKER_COMPLETION_TOPIC": unique(f"{name}-done"),
            "BROKER_FAILURE_TOPIC": unique(f"{name}-failed"),
            "BROKER_DEAD_LETTER_TOPIC": unique(f"{name}-dlq"),
        }
        group = unique(f"{name}-workers")
        base = {
            "BROKER_KIND": "kafka",
            "BROKER_BOOTSTRAP_SERVERS": bootstrap,
            "BROKER_PARTITIONS": str(partitions),
            "BROKER_GROUP": group,
            "DATABASE_URL": db_url,
            "RESONATE_MODE": "remote",
            "RESONATE_URL": resonate_url,
            "RESONATE_MESSAGE_SOURCE_PORT": poll_port,
            "RESONATE_GROUP": unique(f"{name}-rg"),
            "RESONATE_TTL": "2",
            "WORKFLOW_BATCH_SIZE": str(batch_size),
            "WORKFLOW_PAUSE_SECONDS": "0.5",
            "WORKFLOW_STEP_RETRY_DELAY": "0.2",
            "WORKFLOW_STEP_RETRY_MAX_DELAY": "2",
            **topics,
        }
        # RD_EXTRA_WORKER_ENV="KEY=VALUE ..." adds settings to every worker (to measure a tuning)
        extra = dict(kv.split("=", 1) for kv in os.environ.get("RD_EXTRA_WORKER_ENV", "").split())
        env = cli_env(**{**base, **settings, **extra})
        prepare_demo_database(db_url)
        create_topics(
            bootstrap,
            {
                topics["BROKER_REQUEST_TOPIC"]: partitions,
                topics["BROKER_COMPLETION_TOPIC"]: partitions,
                topics["BROKER_FAILURE_TOPIC"]: 1,
                topics["BROKER_DEAD_LETTER_TOPIC"]: 1,
            },
        )
        return cls(
            tmp=tmp,
            bootstrap=bootstrap,
            db_url=db_url,
            prefix=unique(name) + "-",
            group=group,
            topics=topics,
            partitions=partitions,
            batch_size=int(env["WORKFLOW_BATCH_SIZE"]),
            env=env,
            engine=make_engine(db_url, pool_size=2),
        )

    @property
    def request_topic(self) -> str:
        return self.topics["BROKER_REQUEST_TOPIC"]

    @property
    def completion_topic(self) -> str:
        return self.topics["BROKER_COMPLETION_TOPIC"]

    @property
    def dead_letter_topic(self) -> str:
        return self.topics["BROKER_DEAD_LETTER_TOPIC"]

    @property
    def failure_topic(self) -> str:
        return self.topics["BROKER_FAILURE_TOPIC"]

    # --- data -----------------------------------------------------------------------------------
    def seed(self, rows: Sequence[int], *, start: int = 1) -> list[Record]:
        """Create one record per entry of `rows` (that many `record_rows` each)."""
        store = SqlRecordStore(self.engine)
        out = []
        for i, n in enumerate(rows):
            record = Record(f"{self.prefix}{start + i:06d}", n, self.batch_size)
            store.add_record(RecordId(record.id), n)
            out.append(record)
        return out

    def produce(
        self, values: Sequence[bytes | None], *, partition: int | None = None, keys: bool = True
    ) -> list[tuple[int, int]]:
        """Produce raw request values; returns (partition, offset) of each, in order."""
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "log_level": 0})
        placed: dict[int, tuple[int, int]] = {}
        errors: list[str] = []

        def report(i: int):  # type: ignore[no-untyped-def]
            def on_delivery(err: KafkaError | None, msg: Any) -> None:
                if err is not None:
                    errors.append(err.str())
                else:
                    placed[i] = (msg.partition(), msg.offset())

            return on_delivery

        for i, value in enumerate(values):
            kwargs: dict[str, Any] = {"value": value, "on_delivery": report(i)}
            if partition is not None:
                kwargs["partition"] = partition
            if keys and value is not None:
                kwargs["key"] = str(i).encode()
            producer.produce(self.request_topic, **kwargs)
            producer.poll(0)
        assert producer.flush(60) == 0, "requests not delivered"
        assert not errors, errors
        return [placed[i] for i in range(len(values))]

    def request(self, records: Sequence[Record], **kwargs: Any) -> list[tuple[int, int]]:
        """Produce one request per record in the reference example's format ("id")."""
        return self.produce([encode_request(RecordId(r.id)) for r in records], **kwargs)

    def audit(self) -> dict[str, int]:
        """Executed delete batches per record id of this deployment (rows in deletion_audit)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "select record_id, count(*) from deletion_audit where record_id like :p "
                    "group by record_id"
                ),
                {"p": self.prefix + "%"},
            ).all()
        return {str(r[0]): int(r[1]) for r in rows}

    def batches_done(self) -> int:
        return sum(self.audit().values())

    def rows_left(self) -> int:
        """record_rows plus records rows of this deployment still in the database."""
        with self.engine.connect() as conn:
            a = conn.execute(
                text("select count(*) from record_rows where record_id like :p"), {"p": self.prefix + "%"}
            ).scalar_one()
            b = conn.execute(
                text("select count(*) from records where id like :p"), {"p": self.prefix + "%"}
            ).scalar_one()
        return int(a) + int(b)

    def lag(self) -> int:
        return committed_lag(self.bootstrap, self.group, self.request_topic)

    def close(self) -> None:
        self.engine.dispose()


# ------------------------------------------------------------------------------------ topic tail
class TopicReader:
    """Reads a topic from the beginning without a consumer group; accumulates what it saw."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": unique("reader"),
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "log_level": 0,  # the outage tests take the broker away: no connect-refused noise
            }
        )
        meta = self._consumer.list_topics(topic, timeout=15)
        parts = sorted(meta.topics[topic].partitions)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self.messages: list[Read] = []

    def poll(self, timeout: float = 0.3) -> list[Read]:
        for msg in self._consumer.consume(num_messages=5000, timeout=timeout):
            if msg.error():
                continue
            self.messages.append(
                Read(
                    msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(), dict(msg.headers() or [])
                )
            )
        return self.messages

    def close(self) -> None:
        self._consumer.close()


@contextmanager
def topic_reader(bootstrap: str, topic: str) -> Iterator[TopicReader]:
    reader = TopicReader(bootstrap, topic)
    try:
        yield reader
    finally:
        reader.close()


def completion_ids(reader: TopicReader) -> set[str]:
    return {json.loads(m.value or b"null")[0] for m in reader.poll()}


# ------------------------------------------------------------------------------------ supervisor
@dataclass
class Exit:
    slot: int
    generation: int
    code: int
    at: float
    injected: bool  # the test killed it on purpose
    final: bool  # the supervisor stopped it at the end (SIGTERM)


@dataclass
class Slot:
    index: int
    command: tuple[str, ...]
    env: dict[str, str]
    generation: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    injected: bool = False
    logs: list[Path] = field(default_factory=list)


class Supervisor:
    """What systemd or Kubernetes does for the crash-only worker: restart every exit, count it.

    `kill(i)` SIGKILLs slot i on purpose (counted as injected); any other exit (3 = a dependency
    stayed unreachable, 1 = the SDK ended the process, ...) is a crash the test reports. With
    `restart=False` a dead slot stays dead.
    """

    def __init__(
        self,
        env: dict[str, str],
        logs: Path,
        size: int = 1,
        *,
        name: str = "worker",
        command: tuple[str, ...] = WORKER_COMMAND,
        restart: bool = True,
        restart_delay: float = 0.5,
    ) -> None:
        self._dir = logs
        self._name = name
        self._restart = restart
        self._restart_delay = restart_delay
        self.slots = [Slot(i, command, env) for i in range(size)]
        self.exits: list[Exit] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        for slot in self.slots:
            self._spawn(slot)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _spawn(self, slot: Slot) -> None:
        slot.generation += 1
        slot.injected = False
        slot.log = self._dir / f"{self._name}-{slot.index}.{slot.generation}.log"
        slot.logs.append(slot.log)
        with slot.log.open("wb") as out:
            slot.proc = subprocess.Popen(
                [sys.executable, *slot.command], env=slot.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )

    def _watch(self) -> None:
        restart_at: dict[int, float] = {}
        while not self._stopping.is_set():
            with self._lock:
                for slot in self.slots:
                    if slot.proc is None:
                        if slot.index in restart_at and time.monotonic() >= restart_at[slot.index]:
                            del restart_at[slot.index]
                            self._spawn(slot)
                        continue
                    code = slot.proc.poll()
                    if code is None:
                        continue
                    self.exits.append(
                        Exit(slot.index, slot.generation, code, time.monotonic(), slot.injected, False)
                    )
                    slot.proc = None
                    if self._restart:
                        restart_at[slot.index] = time.monotonic() + self._restart_delay
            self._stopping.wait(0.1)

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to slot `index` (counted as an injected crash) and wait until it is gone."""
        with self._lock:
            slot = self.slots[index]
            proc = slot.proc
            if proc is None:
                return
            slot.injected = True
            proc.send_signal(sig)
        proc.wait(30)

    def alive(self) -> list[int]:
        with self._lock:
            return [s.index for s in self.slots if s.proc is not None and s.proc.poll() is None]

    def log_text(self, index: int) -> str:
        """Every generation's log of slot `index`, concatenated."""
        return "".join(p.read_text(errors="replace") for p in self.slots[index].logs if p.exists())

    def all_logs(self) -> str:
        return "".join(f"==== slot {s.index}\n{self.log_text(s.index)}" for s in self.slots)

    def crashes(self) -> list[Exit]:
        """Exits the test did not cause (not killed on purpose, not stopped at the end)."""
        return [e for e in self.exits if not e.injected and not e.final]

    def injected(self) -> list[Exit]:
        return [e for e in self.exits if e.injected]

    def exit_codes(self) -> dict[str, int]:
        return dict(Counter(str(e.code) for e in self.crashes()))

    def stop(self) -> None:
        """SIGTERM every live worker (clean stop, exit 0 expected), SIGKILL after 20 s."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._lock:
            live = [s for s in self.slots if s.proc is not None]
            for slot in live:
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.terminate()
            for slot in live:
                assert slot.proc is not None
                try:
                    code = slot.proc.wait(20)
                except subprocess.TimeoutExpired:
                    slot.proc.kill()
                    code = slot.proc.wait(10)
                self.exits.append(
                    Exit(slot.index, slot.generation, code, time.monotonic(), slot.injected, True)
                )
                slot.proc = None

    def final_codes(self) -> list[int]:
        return [e.code for e in self.exits if e.final]

    def assert_clean_stop(self) -> None:
        """Every worker still running at the end stopped cleanly on SIGTERM (exit 0)."""
        codes = self.final_codes()
        assert codes, "no worker was running at the end"
        assert all(c == 0 for c in codes), f"exit codes on SIGTERM: {codes}\n{self.all_logs()[-3000:]}"


LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S,%f"  # the worker's text log lines start with asctime


def first_handoffs(supervisor: Supervisor) -> dict[str, float]:
    """record id -> wall-clock time of its first `handed_off` log line, over every worker process."""
    out: dict[str, float] = {}
    for slot in supervisor.slots:
        for path in slot.logs:
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                if " handed_off record_id=" not in line:
                    continue
                at = datetime.strptime(line[:23], LOG_TIME_FORMAT).timestamp()
                record_id = line.split("record_id=", 1)[1].split()[0]
                out[record_id] = min(out.get(record_id, at), at)
    return out


def holders(supervisor: Supervisor, record_ids: Sequence[str]) -> dict[int, int]:
    """slot -> how many of `record_ids` its current process logged a delete step for."""
    out: dict[int, int] = {}
    for slot in supervisor.slots:
        if slot.log is None or not slot.log.exists():
            continue
        seen = {
            line.split("record_id=", 1)[1].split()[0]
            for line in slot.log.read_text(errors="replace").splitlines()
            if "step_deleted record_id=" in line
        }
        out[slot.index] = len(seen & set(record_ids))
    return out


# ------------------------------------------------------------------------------------ services
def services_dir() -> Path:
    return Path(os.environ.get("RECORD_DELETER_SERVICES_DIR") or ROOT / ".services")


def services(*args: str, timeout: float = 240) -> None:
    """`scripts/services.sh ARGS` on the state dir the suite runs against."""
    env = {**os.environ, "RECORD_DELETER_SERVICES_DIR": str(services_dir())}
    result = subprocess.run(
        [str(ROOT / "scripts" / "services.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"scripts/services.sh {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def require_owned(name: str) -> None:
    owned = os.environ.get("RECORD_DELETER_SERVICES_OWNED", "").split()
    if name not in owned:
        pytest.fail(
            f"this test stops and restarts {name}, so it needs the {name} that scripts/services.sh "
            f"started (state dir {services_dir()}); RECORD_DELETER_SERVICES_OWNED={' '.join(owned)!r}. "
            "Run it through `make test`, or `scripts/services.sh up` and source its env file",
            pytrace=False,
        )


@contextmanager
def outage(name: str, *, kill: bool = False) -> Iterator[dict[str, float]]:
    """Stop service `name` (SIGKILL with kill=True) for the block; always start it again.

    Yields a dict that gets 'down_at' and, after the block, 'up_at' (time.monotonic()).
    """
    require_owned(name)
    times: dict[str, float] = {}
    services("stop", name, *(["--kill"] if kill else []))
    times["down_at"] = time.monotonic()
    try:
        yield times
    finally:
        last: AssertionError | None = None
        for _ in range(3):
            try:
                services("start", name)
                last = None
                break
            except AssertionError as exc:
                last = exc
                time.sleep(2)
        times["up_at"] = time.monotonic()
        if last is not None:
            raise last


# ------------------------------------------------------------------------------------ figures
@dataclass
class Outcome:
    """What a run left behind, checked against what it was asked to do."""

    records: list[Record]
    completions: dict[str, list[Read]]
    audit: dict[str, int]
    rows_left: int

    @classmethod
    def collect(cls, dep: Deployment, records: Sequence[Record], reader: TopicReader) -> Outcome:
        by_id: dict[str, list[Read]] = defaultdict(list)
        for m in reader.poll(1.0):
            by_id[json.loads(m.value or b"null")[0]].append(m)
        return cls(list(records), dict(by_id), dep.audit(), dep.rows_left())

    @property
    def lost(self) -> list[str]:
        return [r.id for r in self.records if r.id not in self.completions]

    @property
    def unexpected(self) -> list[str]:
        wanted = {r.id for r in self.records}
        return [k for k in self.completions if k not in wanted]

    @property
    def duplicates(self) -> int:
        return sum(len(v) - 1 for v in self.completions.values() if v)

    @property
    def extra_batches(self) -> dict[str, int]:
        """record -> batches executed beyond the number needed (re-executed after a crash)."""
        out = {}
        for r in self.records:
            extra = self.audit.get(r.id, 0) - r.needed
            if extra:
                out[r.id] = extra
        return out

    def check(self, *, max_extra_per_record: int = 1, max_copies: int = 2) -> None:
        """Every record done, nothing lost, duplicates only as identical re-publishes."""
        assert not self.lost, f"{len(self.lost)} record(s) without a completion: {self.lost[:10]}"
        assert not self.unexpected, f"completions for records never requested: {self.unexpected[:10]}"
        assert self.rows_left == 0, f"{self.rows_left} rows left in the database"
        for record_id, copies in self.completions.items():
            assert len(copies) <= max_copies, f"{record_id}: {len(copies)} completions"
            keys = {c.headers.get("idempotency-key") for c in copies}
            assert keys == {record_id.encode()}, f"{record_id}: idempotency keys {keys}"
            # a publish-window duplicate is the same step re-run: byte-identical value and headers
            assert len({(c.value, tuple(sorted(c.headers.items()))) for c in copies}) == 1, (
                f"{record_id}: completions differ: {copies}"
            )
        for r in self.records:
            done = self.audit.get(r.id, 0)
            assert done >= r.needed, f"{r.id}: {done} batches executed, {r.needed} needed"
            assert done <= r.needed + max_extra_per_record, (
                f"{r.id}: {done} batches executed for {r.needed} needed (bound +{max_extra_per_record})"
            )

    def figures(self) -> dict[str, Any]:
        extra = self.extra_batches
        return {
            "records": len(self.records),
            "lost": len(self.lost),
            "duplicate_completions": self.duplicates,
            "re_executed_batches": sum(v for v in extra.values() if v > 0),
            "records_with_re_executed_batch": sum(1 for v in extra.values() if v > 0),
            "batches_needed": sum(r.needed for r in self.records),
            "batches_executed": sum(self.audit.get(r.id, 0) for r in self.records),
        }


def report(scenario: str, **figures: Any) -> dict[str, Any]:
    """Print one `RELIABILITY {json}` line (pytest -s shows it); append it to $RD_RELIABILITY_OUT."""
    line: dict[str, Any] = {"scenario": scenario}
    for key, env in (("label", "RD_RELIABILITY_LABEL"), ("run", "RD_RELIABILITY_RUN")):
        if os.environ.get(env):
            line[key] = os.environ[env]
    line.update(figures)
    text_line = json.dumps(line, sort_keys=False, default=str)
    print(f"\nRELIABILITY {text_line}", flush=True)
    out = os.environ.get("RD_RELIABILITY_OUT")
    if out:
        with Path(out).open("a") as f:
            f.write(text_line + "\n")
    return line
