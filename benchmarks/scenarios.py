"""One measured run of each subject, as the harness drives it (real Kafka, Resonate server, SQL).

Every function returns a plain dict (rates, latencies, peak RSS) and leaves nothing behind: its
topics are deleted and any workflow a killed process left pending is cancelled on the server.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ChildProcess,
    CpuMeter,
    Database,
    Endpoints,
    Topics,
    WorkerProcess,
    any_pending,
    cancel_pending,
    create_topics,
    delete_topics,
    id_patterns,
    log,
    percentile,
    produce_requests,
    raw_consume_rate,
    read_completions,
    run_child,
    sum_metric,
    unique,
    wait_group_ready,
    worker_env,
)

HANDED = "record_deleter_messages_handed_off"
COMPLETED = "record_deleter_completions_published"
CONSUMED = "record_deleter_messages_consumed"


def _latencies(done: Sequence[Any], ids: Sequence[str], t0_wall: float) -> list[float]:
    by_id = {c.record_id: c for c in done}
    return [(by_id[i].ts_ms / 1000.0) - t0_wall for i in ids if i in by_id]


def worker_run(
    ep: Endpoints,
    db: Database,
    ids: Sequence[str],
    *,
    workers: int = 1,
    partitions: int = 4,
    batch_size: int = 1000,
    drain: bool = True,
    complete_ids: Sequence[str] | None = None,
    handoff_concurrency: int | None = None,
    max_in_flight: int | None = 0,
    raw_consume: bool = False,
    profile_to: Path | None = None,
    cleanup: bool = True,
    logdir: Path,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """Real `record-deleter worker` processes: time to the last durable hand-off (Prometheus
    counter, 25 ms polls) and, when draining, to the last completion (its Kafka timestamp).

    `complete_ids`: drain only until these records completed (the rest is killed and cancelled).
    `profile_to`: sample the first worker with py-spy from the produce to the end of the run.
    `cleanup`: leave no pending workflow on the server (False when the server is thrown away next).
    """
    from benchmarks.profiling import Sampler, stop_quietly

    n = len(ids)
    wait_for = list(complete_ids) if complete_ids is not None else list(ids)
    leftovers = drain is False or len(wait_for) < n
    sampler: Sampler | None = None
    topics = Topics.fresh("w")
    create_topics(ep.kafka, topics, partitions)
    env = worker_env(
        ep,
        topics,
        db.url,
        group=unique("bench-g-"),
        resonate_group=unique("bench-rg-"),
        partitions=partitions,
        batch_size=batch_size,
        max_in_flight=max_in_flight,
        handoff_concurrency=handoff_concurrency,
    )
    procs = [WorkerProcess(env, logdir / f"{topics.request}-w{k}.log").start() for k in range(workers)]
    out: dict[str, Any] = {"n": n, "workers": workers}
    try:
        wait_group_ready(procs, partitions)
        if profile_to is not None and procs[0].proc is not None:
            sampler = Sampler(
                procs[0].proc.pid, profile_to.with_name(profile_to.name + ".handoff.txt"), rate=200
            )
            time.sleep(0.5)
        meter = CpuMeter(
            {f"worker{k}": p.proc.pid for k, p in enumerate(procs) if p.proc is not None}, ep.service_pids()
        )
        t0_wall, t0 = produce_requests(ep.kafka, topics.request, ids)
        produced = time.monotonic() - t0
        t_handoff = t_done = None
        use_metrics = False
        last_rss = 0.0
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            now = time.monotonic()
            for p in procs:
                p.scan_log()
            handed = sum(len(p.handed_ts) for p in procs)
            completed = sum(len(p.completed_ts) for p in procs)
            if not handed and now - t0 > 10 and sum_metric(procs, HANDED) > 0:
                use_metrics = True  # the worker no longer logs hand-offs at INFO: poll its counters
            if use_metrics:
                handed, completed = sum_metric(procs, HANDED), sum_metric(procs, COMPLETED)
            if t_handoff is None and handed >= n:
                t_handoff = now - t0
                if sampler is not None and profile_to is not None and procs[0].proc is not None:
                    sampler.stop()  # the hand-off phase is over; sample the rest of the run apart
                    sampler = Sampler(procs[0].proc.pid, profile_to.with_name(profile_to.name + ".drain.txt"))
            if drain and t_done is None and completed >= len(wait_for):
                t_done = now - t0
            if t_handoff is not None and (not drain or t_done is not None):
                break
            if now - last_rss > 1.0:
                for p in procs:
                    p.sample_rss()
                last_rss = now
            if not all(p.alive() for p in procs):
                raise RuntimeError("a worker died:\n" + "\n".join(p.tail() for p in procs))
            time.sleep(0.1 if use_metrics else 0.05)
        if t_handoff is None or (drain and t_done is None):
            raise RuntimeError(
                f"run did not finish in {timeout:.0f}s: handed off {handed}, completed {completed}"
            )
        cpu = meter.stop()
        stop_quietly(sampler)
        sampler = None
        for p in procs:
            p.sample_rss()
        stamps = sorted(t - t0_wall for p in procs for t in p.handed_ts)
        if len(stamps) >= n:  # exact, from the log's millisecond timestamps
            t_handoff = stamps[n - 1]
        out.update(
            handoff_seconds=t_handoff,
            handoff_rate=n / t_handoff,
            produce_seconds=produced,
            handoff_quantiles=[stamps[min(len(stamps) - 1, round(q / 20 * (n - 1)))] for q in range(21)]
            if len(stamps) >= n
            else [],
            cpu_seconds=cpu,
            rss_kb=[p.peak_rss_kb for p in procs],
            timed_by="metrics" if use_metrics else "log",
        )
        if drain:
            done = read_completions(ep.kafka, topics.completion, len(wait_for), wanted=set(wait_for))
            lat = _latencies(done, wait_for, t0_wall)
            if len(lat) < len(wait_for):
                raise RuntimeError(f"{len(lat)}/{len(wait_for)} completions read back")
            out.update(
                e2e_seconds=max(lat),
                e2e_rate=len(wait_for) / max(lat),
                completed_by_poll=t_done,
                latencies=lat,
                rows_deleted=sum(c.rows for c in done if c.record_id in set(wait_for)),
                batches=sum(c.batches for c in done if c.record_id in set(wait_for)),
            )
            if not leftovers and cleanup:
                # A completion is published before the workflow's last durable steps (resolve the
                # step, resolve the root, complete the task). Stopping the worker before those
                # leaves the roots pending and their tasks re-dispatched by the server for ever,
                # which slows every later measurement: wait until none of this run is pending.
                patterns = id_patterns(ids)
                durable_deadline = time.monotonic() + 120
                while any_pending(ep.resonate_url, patterns) and time.monotonic() < durable_deadline:
                    time.sleep(0.25)
                out["durable_seconds"] = time.monotonic() - t0
        if raw_consume:
            out["raw_consume_rate"] = raw_consume_rate(ep.kafka, topics.request, n)
    finally:
        stop_quietly(sampler)
        for p in procs:
            p.stop(kill=leftovers)
        if cleanup and (leftovers or any_pending(ep.resonate_url, id_patterns(ids))):
            t = time.monotonic()
            out["cancelled"] = cancel_pending(ep.resonate_url, ids)
            out["cancel_seconds"] = time.monotonic() - t
        delete_topics(ep.kafka, topics)
    return out


def reference_run(
    ep: Endpoints,
    db: Database,
    ids: Sequence[str],
    *,
    partitions: int = 4,
    batch_size: int = 1000,
    drain: bool = True,
    cleanup: bool = True,
    logdir: Path,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """The reference example's loop (benchmarks.child.reference) in its own process."""
    n = len(ids)
    topics = Topics.fresh("ref")
    create_topics(ep.kafka, topics, partitions)
    child = ChildProcess(
        "reference",
        {
            "bootstrap": ep.kafka,
            "topic": topics.request,
            "done_topic": topics.completion,
            "group": unique("bench-refg-"),
            "resonate_group": unique("bench-refrg-"),
            "host": ep.resonate_host,
            "port": ep.resonate_port,
            "poll_port": ep.resonate_poll_port,
            "db_url": db.url,
            "n": n,
            "batch": batch_size,
            "pause": 0,
        },
        logdir / f"{topics.request}.log",
    )
    out: dict[str, Any] = {"n": n}
    try:
        child.wait_line("READY", 90)
        meter = CpuMeter({"reference": child.proc.pid}, ep.service_pids())
        t0_wall, t0 = produce_requests(ep.kafka, topics.request, ids)
        import json

        line = child.wait_line("HANDED_OFF", timeout)
        out["cpu_seconds"] = meter.stop()
        handed = json.loads(line.split(" ", 1)[1])
        out.update(handoff_seconds=handed["mono"] - t0, handoff_rate=n / (handed["mono"] - t0))
        child.sample_rss()
        if drain:
            done = read_completions(ep.kafka, topics.completion, n, timeout=timeout)
            lat = _latencies(done, ids, t0_wall)
            if len(lat) < n:
                raise RuntimeError(f"reference: {len(lat)}/{n} completions")
            out.update(e2e_seconds=max(lat), e2e_rate=n / max(lat))
        child.sample_rss()
        out["rss_kb"] = [child.peak_rss_kb]
    finally:
        child.kill()
        if not drain and cleanup:
            cancel_pending(ep.resonate_url, ids)
        delete_topics(ep.kafka, topics)
    return out


def naive_run(
    ep: Endpoints,
    db: Database,
    ids: Sequence[str],
    *,
    batch_size: int = 1000,
    partitions: int = 4,
    latency_ids: Sequence[str] | None = None,
    logdir: Path,
    timeout: float = 900.0,
) -> dict[str, Any]:
    """The naive sequential consumer (benchmarks.child.naive) in its own process: every record to
    completion, one after another (`latency_ids`: whose time-to-completion to return)."""
    import json

    n = len(ids)
    topics = Topics.fresh("naive")
    create_topics(ep.kafka, topics, partitions)
    child = ChildProcess(
        "naive",
        {
            "bootstrap": ep.kafka,
            "topic": topics.request,
            "done_topic": topics.completion,
            "failed_topic": topics.failure,
            "group": unique("bench-naiveg-"),
            "db_url": db.url,
            "n": n,
            "batch": batch_size,
        },
        logdir / f"{topics.request}.log",
    )
    out: dict[str, Any] = {"n": n}
    try:
        child.wait_line("READY", 90)
        meter = CpuMeter({"naive": child.proc.pid}, ep.service_pids())
        t0_wall, _t0 = produce_requests(ep.kafka, topics.request, ids)
        line = child.wait_line("RESULT", timeout)
        out["cpu_seconds"] = meter.stop()
        out["rss_kb"] = [json.loads(line.split(" ", 1)[1])["rss_kb"]]
        done = read_completions(ep.kafka, topics.completion, n)
        lat = _latencies(done, ids, t0_wall)
        if len(lat) < n:
            raise RuntimeError(f"naive: {len(lat)}/{n} completions")
        out.update(e2e_seconds=max(lat), e2e_rate=n / max(lat))
        if latency_ids is not None:
            out["latencies"] = _latencies(done, latency_ids, t0_wall)
    finally:
        child.kill()
        delete_topics(ep.kafka, topics)
    return out


def resonate_store_bytes(ep: Endpoints) -> int | None:
    """Size of the Resonate server's SQLite store (+ WAL), when this run started the server."""
    base = ep.resonate_store()
    if base is None:
        return None
    sizes = [p.stat().st_size for p in (base, base.with_name(base.name + "-wal")) if p.exists()]
    return sum(sizes) if sizes else None


def promise_create_run(
    ep: Endpoints, n: int, threads: int, keepalive: bool = False, cleanup: bool = True
) -> dict[str, Any]:
    """The raw create loop; the promises it created are cancelled afterwards (not timed), so
    thousands of pending promises do not pile up in the server for the measurements after it."""
    prefix = unique("pc-")
    store_bytes = resonate_store_bytes(ep)
    try:
        res = run_child(
            "promise_create",
            {
                "host": ep.resonate_host,
                "port": ep.resonate_port,
                "n": n,
                "threads": threads,
                "keepalive": keepalive,
                "prefix": prefix,
            },
        )
    finally:
        if cleanup:
            cancel_pending(ep.resonate_url, [f"{prefix}-{i}" for i in range(n)])
    return dict(res, store_bytes=store_bytes, at=time.time())


def deletion_run(ep: Endpoints, db: Database, rows: int, batch: int, subject: str) -> dict[str, Any]:
    """Rows/s deleting one record of `rows` rows: subject = workflow | store | sql."""
    rid = unique("del-")
    t = time.monotonic()
    db.seed_one(rid, rows)
    seeded = time.monotonic() - t
    if subject in ("workflow", "workflow_per_batch"):
        topics = Topics.fresh("del")
        create_topics(ep.kafka, topics, 1)
        try:
            res = run_child(
                "workflow_delete",
                {
                    "host": ep.resonate_host,
                    "port": ep.resonate_port,
                    "poll_port": ep.resonate_poll_port,
                    "resonate_group": unique("bench-delrg-"),
                    "bootstrap": ep.kafka,
                    "done_topic": topics.completion,
                    "failed_topic": topics.failure,
                    "db_url": db.url,
                    "record_id": rid,
                    "batch": batch,
                    # the worker's default budget, or 0: a checkpoint after every batch
                    "step_seconds": 0.0 if subject == "workflow_per_batch" else None,
                },
            )
        finally:
            delete_topics(ep.kafka, topics)
    else:
        res = run_child("raw_delete", {"db_url": db.url, "record_id": rid, "batch": batch, "mode": subject})
    # the workflow and the store also delete the `records` row (+1): rates count record_rows only
    if res["rows"] < rows:
        raise RuntimeError(f"{subject}: deleted {res['rows']} of {rows} rows")
    res["rate"] = rows / res["seconds"]
    res["record_rows"] = rows
    res["seed_seconds"] = seeded
    return dict(res)


def latency_summary(lat: Sequence[float]) -> dict[str, float]:
    return {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat) if lat else float("nan")}


def note(msg: str) -> None:
    log(msg)
