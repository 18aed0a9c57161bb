"""The scale-out section: does a backlog spread over the workers started on it?

What users do to drain a backlog is start more workers. One run per (repeat, K workers), K = 1
and 2: n one-batch records (10 rows each) in a fresh SQLite database, 4 partitions, batch 1,000,
pause 0, a fresh Resonate server, fresh topics and consumer group. ALL n requests are produced
first; then the K workers are started at the same instant, with the worker's defaults otherwise:
its default WORKER_MAX_IN_FLIGHT and default consumer group protocol are what is under test (the
first worker to join must not take the whole backlog in hand before the second gets partitions).
The harness does not wait for the group to form: joining is part of what is measured.

Figures of a run, timed from the moment the workers were started (t0):

* `processes`: per worker process, the distinct records it deleted (`record_id` of its
  `step_deleted` events), its `share` of n, when it handed off its first record and deleted its
  last one, how often it paused at its in-flight bound, its peak RSS and CPU seconds;
  `min_share`, `max_share` over the processes; `overlap`: records more than one process deleted
  a batch of (a partition moved while the record was in hand; 0 expected);
* `durable_rate`: n ÷ (the moment the run's Resonate server holds all n root promises resolved,
  handoff.py's worker `finished` hook polled every 50 ms once every completion is in - t0);
  `e2e_rate`: n ÷ (the last completion's timestamp - t0);
* `rss_kb`: the largest peak RSS of the processes (VmHWM, sampled every second);
  `cpu_per_1000`: CPU seconds per 1,000 records of the workers together (start-up included: it
  is part of what scaling out costs), the Resonate server, Kafka and PostgreSQL, from t0 to the
  last completion, as in the other sections.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Any

from tests.harness import CpuMeter, Process, produce, service_pids, topic_reader

from benchmarks import growth, handoff
from benchmarks.handoff import Run, Subject

WORKERS = (1, 2)  # workers per run; the order alternates from one repeat to the next
SHARE_GOAL = (0.35, 0.65)  # each of 2 workers runs this much of the backlog


@dataclass
class Options:
    n: int = 1000
    partitions: int = 4
    batch: int = 1000
    workers: tuple[int, ...] = WORKERS


def subject(workers: int) -> Subject:
    """The worker as deployed (growth.py's env: handoff.worker_env without WORKER_MAX_IN_FLIGHT=0),
    `workers` processes of it."""
    return replace(
        handoff.SUBJECTS["worker"],
        title=f"record-deleter, {workers} worker{'s' if workers != 1 else ''}",
        env=growth.default_worker_env,
        processes=workers,
    )


def measure(subject: Subject, run: Run, tag: str, n: int) -> dict[str, Any]:
    """Produce the backlog growth.record_id(tag, 0..n-1), then start the subject's processes at
    once and time them until every workflow is durably finished; see the module doc."""
    ids = [growth.record_id(tag, i) for i in range(n)]
    produce(
        run.bootstrap,
        run.topics.request,
        [json.dumps(i).encode() for i in ids],
        keys=[i.encode() for i in ids],
    )
    env, command = subject.env(run), handoff.command_of(subject)
    timeout = 300 + n / growth.MIN_RATE
    procs: list[Process] = []
    try:
        with topic_reader(run.bootstrap, run.topics.completion) as reader:
            t0 = time.time()
            procs = [Process(command, env, run.logdir / f"{tag}-{k}.log") for k in range(subject.processes)]
            services = {k: v for k, v in service_pids().items() if k in ("kafka", "postgres")}
            pids = {**{f"subject{k}": p.pid for k, p in enumerate(procs)}, **services}
            if run.resonate is not None:
                pids["resonate"] = run.resonate.pid
            meter = CpuMeter(pids)
            done: dict[str, float] = {}
            watch = handoff.Watch(subject, procs, timeout)
            while len(done) < n:
                handoff.note_completions(reader.poll(0.05), done)  # seen at most 50 ms late
                reader.messages.clear()
                watch.check(len(done), n)
            cpu = meter.stop()
        last = max(done.values())
        finished = last
        if subject.finished is not None:
            finished = handoff.durably_finished(subject, run, n, procs, watch.deadline)
    finally:
        for p in procs:
            p.stop()
    wanted = set(ids)
    per_process = []
    deleted_by: list[set[str]] = []
    for k, p in enumerate(procs):
        steps = p.events.named("step_deleted")
        deleted = {str(e["record_id"]) for e in steps} & wanted
        handed = [e.at for e in p.events.named("handed_off")]
        deleted_by.append(deleted)
        per_process.append(
            {
                "deleted": len(deleted),
                "share": len(deleted) / n,
                "handed_off": len(handed),
                "first_handoff_seconds": min(handed) - t0 if handed else None,
                "last_deleted_seconds": max(e.at for e in steps) - t0 if steps else None,
                "paused": p.events.count("paused"),
                "rss_kb": p.peak_rss_kb,
                "cpu_seconds": cpu.get(f"subject{k}"),
            }
        )
    shares = [len(d) / n for d in deleted_by]
    union = set().union(*deleted_by)
    return {
        "n": n,
        "workers": len(procs),
        "database": "sqlite",
        "processes": per_process,
        "min_share": min(shares),
        "max_share": max(shares),
        "deleted": len(union),
        "overlap": sum(len(d) for d in deleted_by) - len(union),
        "durable_seconds": finished - t0,
        "durable_rate": n / (finished - t0),
        "e2e_seconds": last - t0,
        "e2e_rate": n / (last - t0),
        "rss_kb": max(p.peak_rss_kb for p in procs),
        "cpu_per_1000": {
            "subject": sum(v for k, v in cpu.items() if k.startswith("subject")) * 1000 / n,
            **{k: v * 1000 / n for k, v in cpu.items() if k in ("resonate", "kafka", "postgres", "harness")},
        },
    }
