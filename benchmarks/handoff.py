"""The hand-off / end-to-end benchmark: one measured run of a subject.

A *subject* consumes the requests of `Run.topics.request` in consumer group `Run.group` and
publishes one completion per record to `Run.topics.completion` (value `[id, offset]`). Every
subject is measured the same way: the harness waits until its group holds every partition,
produces N requests, and reads the completion topic until every record has one. End to end =
N / (last completion's timestamp - start of producing). A subject that emits `handed_off` events
(the worker) also gets a hand-off rate: N / (its N-th `handed_off` event - start of producing).

Adding a subject (the DBOS worker of a later issue): a `Subject` in SUBJECTS with its command and
environment; the mode's `subjects` in run.py names it; the report gives it a row and a ratio.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness import (
    WORKER_COMMAND,
    CpuMeter,
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


@dataclass(frozen=True)
class Subject:
    title: str
    command: tuple[str, ...]  # python arguments
    env: Callable[[Run], dict[str, str]]
    processes: int = 1
    durable: bool = False  # gets a Resonate server of its own per run


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


SUBJECTS = {
    "worker": Subject("record-deleter, 1 worker", WORKER_COMMAND, worker_env, durable=True),
    "worker2": Subject("record-deleter, 2 workers", WORKER_COMMAND, worker_env, processes=2, durable=True),
    "naive": Subject("naive sequential consumer", ("-m", "benchmarks.naive"), naive_env),
}


def start(subject: Subject, run: Run, tag: str) -> list[Process]:
    """The subject's processes, once its consumer group holds every partition."""
    env = subject.env(run)
    procs = [Process(subject.command, env, run.logdir / f"{tag}-{k}.log") for k in range(subject.processes)]

    def ready() -> bool:
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{subject.title} exited during start-up:\n{p.tail()}")
        return group_ready(run.bootstrap, run.group, subject.processes, run.partitions)

    wait_for(ready, timeout=90, interval=0.2, message=f"{subject.title}: consumer group ready")
    return procs


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
            deadline, sampled, seen = time.monotonic() + timeout, 0.0, 0
            while len(done) < len(ids):
                messages = reader.poll(0.2)
                for m in messages[seen:]:
                    rid = json.loads(m.value or b"null")[0]
                    done[rid] = min(done.get(rid, m.timestamp), m.timestamp)
                seen = len(messages)
                if time.monotonic() - sampled > 1:
                    sampled = time.monotonic()
                    for p in procs:
                        p.sample_rss()
                        if not p.alive():
                            raise RuntimeError(f"{subject.title} exited:\n{p.tail()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{subject.title}: {len(done)}/{len(ids)} completions in {timeout:.0f}s"
                    )
            cpu = meter.stop()
        handed = sorted(e.at for p in procs for e in p.events.named("handed_off"))
    finally:
        for p in procs:
            p.stop()
    n = len(ids)
    e2e = max(done.values()) - t0
    out: dict[str, Any] = {
        "n": n,
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
