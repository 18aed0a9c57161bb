"""The hand-off / end-to-end benchmark: one measured run of a subject.

A *subject* consumes the requests of `Run.topics.request` in consumer group `Run.group` and
publishes one completion per record to `Run.topics.completion` (value `[id, offset]`). Every
subject is measured the same way: the harness waits until its group holds every partition,
produces N requests, and reads the completion topic until every record has one. Two end-to-end
figures, both from the start of producing:

* durably finished (the main one): N / (the moment the subject's own durable store says all N
  workflows are finished). `Subject.finished(run, n)` counts them; the harness polls it every
  50 ms once the N completions are in, so the moment is late by at most a poll (plus the query).
  The worker: resolved root promises (`rd:req:...`) on the run's Resonate server; DBOS:
  `workflow_status` rows with status SUCCESS in its system database. A subject without a durable
  store (the naive consumer) has no hook: its work is finished when its last completion is out.
* last completion: N / (last completion's timestamp - start of producing).

A subject that emits `handed_off` events (the worker) also gets a hand-off rate: N / (its N-th
`handed_off` event - start of producing).

Adding a subject: a `Subject` in SUBJECTS with its command, environment, optional interpreter
(a virtual environment of its own) and `finished` hook; the mode's `subjects` in run.py names it;
the report gives it a row.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from tests.harness import (
    ROOT,
    WORKER_COMMAND,
    CpuMeter,
    EventLog,
    Process,
    ResonateServer,
    Topics,
    cli_env,
    group_ready,
    produce,
    service_pids,
    topic_reader,
    unique,
    wait_for,
)


@dataclass(frozen=True)
class Run:
    """Everything one subject run is configured from."""

    bootstrap: str
    topics: Topics
    group: str
    db_url: str
    partitions: int
    batch_size: int
    logdir: Path
    resonate: ResonateServer | None = None  # a fresh server of this run, for durable subjects
    settings: tuple[tuple[str, str], ...] = ()  # extra WORKER_/WORKFLOW_ settings (the worker's)
    system_db: str | None = None  # an empty PostgreSQL database of this run, for subjects that ask


@dataclass(frozen=True)
class Subject:
    title: str
    command: tuple[str, ...]  # python arguments
    env: Callable[[Run], dict[str, str]]
    processes: int = 1
    durable: bool = False  # gets a Resonate server of its own per run
    interpreter: Path | None = None  # a python of its own (default: the harness's)
    system_db: bool = False  # gets an empty PostgreSQL database of its own per run (Run.system_db)
    # how many of the run's n workflows its durable store has finished; None: nothing durable
    finished: Callable[[Run, int], int] | None = None


def worker_env(run: Run) -> dict[str, str]:
    """The worker as deployed: environment variables only, JSON event logs, pause 0, no
    backpressure (WORKER_MAX_IN_FLIGHT=0, so the hand-off runs at its own pace)."""
    assert run.resonate is not None
    return cli_env(
        BROKER_KIND="kafka",
        BROKER_BOOTSTRAP_SERVERS=run.bootstrap,
        BROKER_PARTITIONS=str(run.partitions),
        BROKER_GROUP=run.group,
        DATABASE_URL=run.db_url,
        RESONATE_MODE="remote",
        RESONATE_URL=run.resonate.url,
        RESONATE_MESSAGE_SOURCE_PORT=str(run.resonate.poll_port),
        RESONATE_GROUP=unique("bench-rg"),
        WORKFLOW_BATCH_SIZE=str(run.batch_size),
        WORKFLOW_PAUSE_SECONDS="0",
        WORKER_MAX_IN_FLIGHT="0",
        **run.topics.env(),
        **dict(run.settings),
    )


def naive_env(run: Run) -> dict[str, str]:
    return cli_env(
        BROKER_BOOTSTRAP_SERVERS=run.bootstrap,
        BROKER_GROUP=run.group,
        DATABASE_URL=run.db_url,
        WORKFLOW_BATCH_SIZE=str(run.batch_size),
        **run.topics.env(),
    )


def dbos_env(run: Run) -> dict[str, str]:
    """benchmarks/dbos_worker.py: the worker's settings where they apply, its system database, and
    its queue polled every 0.1 s (DBOS's default 1 s would add up to a second per record)."""
    assert run.system_db is not None
    return cli_env(
        BROKER_BOOTSTRAP_SERVERS=run.bootstrap,
        BROKER_GROUP=run.group,
        DATABASE_URL=run.db_url,
        WORKFLOW_BATCH_SIZE=str(run.batch_size),
        DBOS_SYSTEM_DATABASE_URL=run.system_db,
        DBOS_KAFKA_QUEUE_POLLING_SECONDS="0.1",
        **run.topics.env(),
    )


def worker_finished(run: Run, n: int) -> int:
    """Resolved root promises of this run's requests on its Resonate server (`GET /promises`
    search, 100 a page, following the cursor). Root ids are `RequestRef.key`:
    rd:req:<group>:<topic>:<partition>:<offset>:<timestamp>; the glob also matches the children."""
    assert run.resonate is not None
    root = re.compile(rf"^rd:req:.*:{re.escape(run.topics.request)}:\d+:\d+:\d+$")
    query: dict[str, str] = {"id": f"rd:req:*{run.topics.request}*", "state": "resolved", "limit": "100"}
    count = 0
    for _ in range(10 * n + 10):  # pages; bounded
        url = f"{run.resonate.url}/promises?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            page = json.loads(resp.read())
        count += sum(1 for p in page.get("promises") or [] if root.match(p["id"]))
        if not page.get("cursor"):
            return count
        query = {"cursor": page["cursor"]}
    raise RuntimeError("promise search: too many pages")


def dbos_finished(run: Run, _n: int) -> int:
    """Workflows of this run's requests with status SUCCESS in DBOS's system database (its
    Kafka consumer names them kafka-unique-id-<topic>-<partition>-<group>-<offset>)."""
    assert run.system_db is not None
    db = create_engine(run.system_db, poolclass=NullPool)
    try:
        with db.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS' "
                        "AND workflow_uuid LIKE :p"
                    ),
                    {"p": f"kafka-unique-id-{run.topics.request}-%"},
                ).scalar_one()
            )
    finally:
        db.dispose()


# scripts/bench.sh makes it: dbos pinned there, plus the client libraries at .venv's versions
DBOS_PYTHON = ROOT / ".venv-bench-dbos" / "bin" / "python"

SUBJECTS = {
    "worker": Subject(
        "record-deleter, 1 worker", WORKER_COMMAND, worker_env, durable=True, finished=worker_finished
    ),
    "worker2": Subject(
        "record-deleter, 2 workers",
        WORKER_COMMAND,
        worker_env,
        processes=2,
        durable=True,
        finished=worker_finished,
    ),
    "naive": Subject("naive sequential consumer", ("-m", "benchmarks.naive"), naive_env),
    "dbos": Subject(
        "DBOS Transact, 1 worker",
        ("-m", "benchmarks.dbos_worker"),
        dbos_env,
        interpreter=DBOS_PYTHON,
        system_db=True,
        finished=dbos_finished,
    ),
}

# Process runs the harness's python: a subject with a python of its own is exec'd by it (same pid,
# so the CPU and RSS figures are the subject's)
_EXEC = "import os, sys; os.execv(sys.argv[1], sys.argv[1:])"


def command_of(subject: Subject) -> tuple[str, ...]:
    if subject.interpreter is None:
        return subject.command
    if not subject.interpreter.exists():
        raise RuntimeError(
            f"{subject.title}: no {subject.interpreter}; scripts/bench.sh makes it "
            "(`scripts/bench.sh --prepare` only makes the virtual environments)"
        )
    return ("-c", _EXEC, str(subject.interpreter), *subject.command)


def start(subject: Subject, run: Run, tag: str, events: Callable[[], EventLog] = EventLog) -> list[Process]:
    """The subject's processes, once its consumer group holds every partition (each process's
    events go to an `events()` of its own)."""
    env, command = subject.env(run), command_of(subject)
    procs = [Process(command, env, run.logdir / f"{tag}-{k}.log", events()) for k in range(subject.processes)]

    def ready() -> bool:
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{subject.title} exited during start-up:\n{p.tail()}")
        return group_ready(run.bootstrap, run.group, subject.processes, run.partitions)

    wait_for(ready, timeout=90, interval=0.2, message=f"{subject.title}: consumer group ready")
    return procs


def note_completions(messages: Iterable[Any], done: dict[str, float]) -> None:
    """Record each completion (value `[id, offset]`) under its record id, at its earliest timestamp."""
    for m in messages:
        rid = json.loads(m.value or b"null")[0]
        done[rid] = min(done.get(rid, m.timestamp), m.timestamp)


class Watch:
    """A measured run's guard: samples its processes' RSS once a second, fails when one of them
    exited, or when the run is past its deadline."""

    def __init__(self, subject: Subject, procs: list[Process], timeout: float) -> None:
        self.subject, self.procs, self.timeout = subject, procs, timeout
        self.deadline = time.monotonic() + timeout
        self._sampled = 0.0

    def check(self, done: int, n: int) -> None:
        if time.monotonic() - self._sampled > 1:
            self._sampled = time.monotonic()
            for p in self.procs:
                p.sample_rss()
                if not p.alive():
                    raise RuntimeError(f"{self.subject.title} exited:\n{p.tail()}")
        if time.monotonic() > self.deadline:
            raise TimeoutError(f"{self.subject.title}: {done}/{n} completions in {self.timeout:.0f}s")


def measure(subject: Subject, run: Run, ids: list[str], tag: str, timeout: float = 900) -> dict[str, Any]:
    """Produce one request per id to a started subject; time the hand-off and the completions."""
    procs = start(subject, run, tag)
    services = {k: v for k, v in service_pids().items() if k in ("kafka", "postgres")}
    pids = {**{f"subject{k}": p.pid for k, p in enumerate(procs)}, **services}
    if run.resonate is not None:
        pids["resonate"] = run.resonate.pid
    try:
        with topic_reader(run.bootstrap, run.topics.completion) as reader:
            meter = CpuMeter(pids)
            t0 = time.time()
            produce(
                run.bootstrap,
                run.topics.request,
                [json.dumps(i).encode() for i in ids],
                keys=[i.encode() for i in ids],
            )
            done: dict[str, float] = {}
            watch, seen = Watch(subject, procs, timeout), 0
            while len(done) < len(ids):
                messages = reader.poll(0.05)  # the last completion is seen at most this late
                note_completions(messages[seen:], done)
                seen = len(messages)
                watch.check(len(done), len(ids))
            cpu = meter.stop()
        finished = max(done.values())
        if subject.finished is not None:
            finished = durably_finished(subject, run, len(ids), procs, watch.deadline)
        handed = sorted(e.at for p in procs for e in p.events.named("handed_off"))
    finally:
        for p in procs:
            p.stop()
    n = len(ids)
    e2e = max(done.values()) - t0
    out: dict[str, Any] = {
        "n": n,
        "durable_seconds": finished - t0,
        "durable_rate": n / (finished - t0),
        "e2e_seconds": e2e,
        "e2e_rate": n / e2e,
        "rss_kb": max(p.peak_rss_kb for p in procs),
        "cpu_per_1000": {
            "subject": sum(v for k, v in cpu.items() if k.startswith("subject")) * 1000 / n,
            **{k: v * 1000 / n for k, v in cpu.items() if k in ("resonate", "kafka", "postgres", "harness")},
        },
    }
    if len(handed) >= n:
        out |= {"handoff_seconds": handed[n - 1] - t0, "handoff_rate": n / (handed[n - 1] - t0)}
    return out


def durably_finished(subject: Subject, run: Run, n: int, procs: list[Process], deadline: float) -> float:
    """When `subject.finished` first counts n (time.time(), polled every 50 ms until `deadline`)."""
    assert subject.finished is not None
    while True:
        count = subject.finished(run, n)
        at = time.time()
        if count >= n:
            return at
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{subject.title} exited:\n{p.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{subject.title}: {count}/{n} workflows durably finished by the deadline")
        time.sleep(0.05)


def promise_create_rate(url: str, n: int, threads: int) -> dict[str, Any]:
    """The Resonate server's raw rate of `POST /promises` from `threads` client threads, each over
    one keep-alive connection (the durable side's limit for the hand-off)."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    prefix = unique("bench-pc")
    timeout_ms = int((time.time() + 86_400) * 1000)  # pending, inert: no task, no callback
    errors: list[int] = []

    def loop(k: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        for i in range(k, n, threads):
            body = json.dumps({"id": f"{prefix}-{i}", "param": {}, "timeout": timeout_ms, "tags": {}})
            conn.request("POST", "/promises", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status >= 300:
                errors.append(resp.status)
        conn.close()

    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} promise creates failed (HTTP {sorted(set(errors))})")
    return {"n": n, "threads": threads, "seconds": seconds, "rate": n / seconds}
