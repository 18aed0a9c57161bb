"""Scenarios that run in their own process: `python -m benchmarks.child NAME JSON-ARGS`.

Each prints `RESULT {json}` as its last stdout line (long-running ones also print protocol lines
such as `READY`). A process per scenario keeps the peak RSS of each subject separate and lets
the SDK's threads, which cannot all be stopped, end with the process.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import threading
import time
from collections import Counter
from typing import Any

from benchmarks.common import unique


def _rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _emit(kind: str, payload: Any = None) -> None:
    print(kind if payload is None else f"{kind} {json.dumps(payload)}", flush=True)


# ---------------------------------------------------------------- baseline: raw promise creates
def promise_create(a: dict[str, Any]) -> dict[str, Any]:
    """The Resonate server's raw promise-create rate from a client loop: the SDK's RemoteStore
    (a new HTTP connection per request), or with keepalive=True one keep-alive connection per
    thread (what the worker's KeepAliveRemoteStore does)."""
    from resonate.retry_policies import Never
    from resonate.stores import RemoteStore

    n, threads, prefix = a["n"], a["threads"], a.get("prefix") or unique("pc-")
    store_cls = _keepalive_store() if a.get("keepalive") else RemoteStore
    timeout_ms = int((time.time() + 86_400) * 1000)  # inert: pending, no task, no callback
    per = [list(range(k, n, threads)) for k in range(threads)]
    errors: list[str] = []
    latencies: list[float] = []

    def loop(k: int) -> None:
        store = store_cls(host=a["host"], port=a["port"], retry_policy=Never())
        for i in per[k]:
            t = time.perf_counter()
            try:
                store.promises.create(f"{prefix}-{i}", timeout_ms, data=json.dumps({"i": i}))
            except Exception as exc:
                errors.append(str(exc))
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "rate": n / wall,
        "seconds": wall,
        "errors": len(errors),
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "rss_kb": _rss_kb(),
    }


def _keepalive_store() -> Any:
    """What-if for the profile: the SDK's RemoteStore, but one keep-alive HTTP session per thread
    instead of a new `requests.Session()` (a new TCP connection) per request. No retries."""
    from requests import Session
    from resonate.errors import ResonateStoreError
    from resonate.stores import RemoteStore

    class KeepAliveStore(RemoteStore):
        _local = threading.local()

        def call(self, req: Any) -> Any:
            session = getattr(self._local, "session", None)
            if session is None:
                session = self._local.session = Session()
            req.prepare_auth(self._auth)
            res = session.send(req, timeout=self._timeout)
            if res.status_code == 204:
                return None
            if res.status_code >= 300:
                raise ResonateStoreError(mesg=res.text, code=res.status_code)
            return res.json()

    return KeepAliveStore


def store_growth(a: dict[str, Any]) -> dict[str, Any]:
    """The server's sequential create rate as its store fills with completed promises (created and
    resolved by 8 keep-alive client threads between the probes; completed promises are inert)."""
    import requests

    url = f"{a['host']}:{a['port']}"
    points = []
    total = 0

    def fill(m: int, threads: int = 8) -> None:
        prefix = unique("fill-")
        timeout_ms = int((time.time() + 86_400) * 1000)

        def work(k: int) -> None:
            with requests.Session() as s:
                for i in range(k, m, threads):
                    pid = f"{prefix}-{i}"
                    s.post(
                        f"{url}/promises",
                        json={"id": pid, "param": {}, "timeout": timeout_ms, "tags": {}},
                        headers={"strict": "False"},
                        timeout=30,
                    )
                    s.patch(
                        f"{url}/promises/{pid}",
                        json={"state": "RESOLVED", "value": {}},
                        headers={"strict": "False"},
                        timeout=30,
                    )

        ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    for target in [0, *a["sizes"]]:
        if target > total:
            fill(target - total)
            total = target
        probe = promise_create({"host": a["host"], "port": a["port"], "n": a["n"], "threads": 1})
        total += a["n"]
        points.append({"completed_promises": target, "rate": probe["rate"], "p50_ms": probe["p50_ms"]})
    return {"points": points, "rss_kb": _rss_kb()}


# ------------------------------------------------------- baseline: the reference example's loop
def reference(a: dict[str, Any]) -> dict[str, Any]:
    """resonatehq-examples/example-kafka-worker-py record_deletor/delete.py, reproduced: a plain
    consumer with auto-commit (offsets committed on poll, not after the hand-off), one sequential
    `workflow.begin_run(record_id, record_id, offset)` per polled message, the workflow
    `while (yield ctx.run(delete_batch, ...)): yield ctx.sleep(5)` then `ctx.run(enqueue, ...)`
    with `producer.produce(...); producer.flush()`. The only changes: delete_batch calls the
    project's SqlRecordStore (same deletion work as the worker, no simulated random failures),
    and the example's sleep of 5 s is the run's pause (0 here: one batch per record)."""
    from confluent_kafka import Consumer, Producer
    from resonate import Resonate

    from record_deleter.adapters.sql_engine import make_engine
    from record_deleter.adapters.sql_store import SqlRecordStore
    from record_deleter.domain.model import RecordId

    store = SqlRecordStore(make_engine(a["db_url"]))
    batch, pause, done_topic = a["batch"], a["pause"], a["done_topic"]
    producer = Producer({"bootstrap.servers": a["bootstrap"]})
    resonate = Resonate.remote(
        group=a["resonate_group"],
        host=a["host"],
        store_port=a["port"],
        message_source_port=a["poll_port"],
        log_level=logging.WARNING,
    )

    def delete_batch(_: Any, record_id: str) -> bool:
        print(f"deleting a batch of rows related to record {record_id}", file=sys.stderr)
        return store.delete_batch(RecordId(record_id), batch).more

    def enqueue(_: Any, msg_id: str, previous_offset: int) -> None:
        payload = json.dumps((msg_id, previous_offset)).encode("utf-8")
        producer.produce(done_topic, value=payload)
        producer.flush()

    def workflow(ctx: Any, record_id: str, offset: int) -> Any:
        print(f"processing record {record_id} in position {offset}", file=sys.stderr)
        while (yield ctx.run(delete_batch, record_id)):
            yield ctx.sleep(pause)
        yield ctx.run(enqueue, record_id, offset)

    wf = resonate.register(workflow, name="reference_workflow")
    consumer = Consumer(
        {
            "bootstrap.servers": a["bootstrap"],
            "group.id": a["group"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )
    ready = threading.Event()
    consumer.subscribe([a["topic"]], on_assign=lambda _c, _p: ready.set())
    resonate.start()
    while not ready.is_set():
        consumer.poll(0.1)
    _emit("READY")
    handled = 0
    n = a["n"]
    while handled < n:
        msg = consumer.poll(timeout=1.0)
        if msg is None:
            continue
        if msg.error():
            print(f"Consumer error: {msg.error()}", file=sys.stderr)
            continue
        try:
            record_id = json.loads(msg.value().decode("utf-8"))
            if isinstance(record_id, str):
                record_id = [record_id]
            _ = wf.begin_run(record_id[0], record_id[0], msg.offset())
        except Exception as e:
            print(f"Error processing message: {e}", file=sys.stderr)
        handled += 1
    _emit("HANDED_OFF", {"mono": time.monotonic(), "rss_kb": _rss_kb()})
    # keep running so the workflows finish; the harness kills this process
    while True:
        consumer.poll(1.0)


# -------------------------------------------------------------- baseline: naive sequential consumer
def naive(a: dict[str, Any]) -> dict[str, Any]:
    """A consumer that processes each message to completion before polling the next: the same
    SqlRecordStore.delete_batch loop and the same confirmed completion publish, no workflow."""
    from confluent_kafka import Consumer

    from record_deleter.adapters.kafka import ConfirmedProducer, KafkaClientConfig, KafkaCompletionPublisher
    from record_deleter.adapters.sql_engine import make_engine
    from record_deleter.adapters.sql_store import SqlRecordStore
    from record_deleter.domain.messages import parse_request
    from record_deleter.domain.model import Completion, workflow_id

    store = SqlRecordStore(make_engine(a["db_url"]))
    publisher = KafkaCompletionPublisher(
        ConfirmedProducer(KafkaClientConfig(a["bootstrap"])), a["done_topic"], a["failed_topic"]
    )
    consumer = Consumer(
        {
            "bootstrap.servers": a["bootstrap"],
            "group.id": a["group"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )
    ready = threading.Event()
    consumer.subscribe([a["topic"]], on_assign=lambda _c, _p: ready.set())
    while not ready.is_set():
        consumer.poll(0.1)
    _emit("READY")
    handled, n, batch = 0, a["n"], a["batch"]
    while handled < n:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        rid = parse_request(msg.value())
        rows = batches = 0
        while True:
            result = store.delete_batch(rid, batch)
            rows += result.deleted
            batches += 1
            if not result.more:
                break
        publisher.publish(Completion(rid, msg.offset() or 0, rows, batches, workflow_id(rid)))
        handled += 1
    consumer.close()
    _emit("RESULT", {"mono": time.monotonic(), "rss_kb": _rss_kb()})
    while True:  # the harness reads this process's CPU time, then kills it
        time.sleep(1)


# ---------------------------------------------------------------- deletion: raw loop vs workflow
def raw_delete(a: dict[str, Any]) -> dict[str, Any]:
    """Delete one record's rows batch by batch without a workflow.

    mode=store: SqlRecordStore.delete_batch in a plain loop (the workflow's own step code).
    mode=sql:   the bare statement `DELETE FROM record_rows WHERE id IN (SELECT id ... LIMIT n)`,
                one transaction per batch, no audit row and no "rows left?" probe (the limit).
    """
    from sqlalchemy import text

    from record_deleter.adapters.sql_engine import make_engine
    from record_deleter.adapters.sql_store import SqlRecordStore
    from record_deleter.domain.model import RecordId

    engine = make_engine(a["db_url"])
    rid, batch = a["record_id"], a["batch"]
    rows = batches = 0
    if a["mode"] == "store":
        store = SqlRecordStore(engine)
        store.delete_batch(RecordId("warm-up-no-such-record"), 1)  # plan validation, pool
        start = time.perf_counter()
        while True:
            r = store.delete_batch(RecordId(rid), batch)
            rows += r.deleted
            batches += 1
            if not r.more:
                break
    else:
        stmt = text(
            "DELETE FROM record_rows WHERE id IN (SELECT id FROM record_rows WHERE record_id = :k LIMIT :n)"
        )
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            conn.commit()
            start = time.perf_counter()
            while True:
                n = conn.execute(stmt, {"k": rid, "n": batch}).rowcount
                conn.commit()
                rows += n
                batches += 1
                if n < batch:
                    break
            conn.execute(text("DELETE FROM records WHERE id = :k"), {"k": rid})
            conn.commit()
    seconds = time.perf_counter() - start
    engine.dispose()
    return {"rows": rows, "batches": batches, "seconds": seconds, "rate": rows / seconds, "rss_kb": _rss_kb()}


def _runtime(a: dict[str, Any], batch: int) -> Any:
    """The project's runtime and record store built exactly as the worker builds them: settings from
    the environment, then the worker's DI container (so whatever the runtime adapter, the settings
    or the container do is measured too: recovery target, events, logging, pool sizes)."""
    import os

    from record_deleter.entrypoints.containers import WorkerContainer
    from record_deleter.entrypoints.settings import load_settings

    os.environ.update(
        BROKER_KIND="kafka",
        BROKER_BOOTSTRAP_SERVERS=a["bootstrap"],
        BROKER_COMPLETION_TOPIC=a["done_topic"],
        BROKER_FAILURE_TOPIC=a["failed_topic"],
        DATABASE_URL=a["db_url"],
        RESONATE_MODE="remote",
        RESONATE_URL=f"{a['host']}:{a['port']}",
        RESONATE_MESSAGE_SOURCE_PORT=str(a["poll_port"]),
        RESONATE_GROUP=a["resonate_group"],
        WORKFLOW_BATCH_SIZE=str(batch),
        WORKFLOW_PAUSE_SECONDS="0",
    )
    if a.get("step_seconds") is not None:
        os.environ["WORKFLOW_STEP_SECONDS"] = str(a["step_seconds"])
    settings = load_settings()
    logging.getLogger().setLevel(settings.worker.log_level)  # the worker logs its events at INFO
    logging.getLogger("resonate").setLevel(logging.WARNING)
    container = WorkerContainer()
    container.config.from_dict(settings.container_config())
    runtime = container.adapters.runtime()
    runtime.start_runtime()
    return runtime, container.adapters.record_store()


def workflow_delete(a: dict[str, Any]) -> dict[str, Any]:
    """One record's rows deleted through the durable workflow (real Resonate server), pause 0."""
    from record_deleter.domain.model import RecordId

    runtime, store = _runtime(a, a["batch"])
    store.delete_batch(RecordId("warm-up-no-such-record"), 1)
    rid = RecordId(a["record_id"])
    start = time.perf_counter()
    runtime.start(rid, 0)
    result = runtime.wait(rid, timeout=a.get("timeout", 600))
    seconds = time.perf_counter() - start
    rows = int(result["rows_deleted"])
    return {
        "rows": rows,
        "batches": int(result["batches"]),
        "seconds": seconds,
        "rate": rows / seconds,
        "rss_kb": _rss_kb(),
    }


# ------------------------------------------------------------------------------- profile: counts
def _request_kind(method: str, path_url: str) -> str:
    parts = path_url.split("?", maxsplit=1)[0].strip("/").split("/")
    if parts[0] not in ("promises", "tasks", "schedules"):
        return "GET long-poll (message source)"
    if len(parts) == 1:
        return f"{method} /{parts[0]}"
    if parts[1] in ("task", "callback", "subscribe", "claim", "complete", "heartbeat"):
        return f"{method} /{parts[0]}/{parts[1]}"
    return f"{method} /{parts[0]}/{{id}}"


def profile_counts(a: dict[str, Any]) -> dict[str, Any]:
    """Deterministic costs of one hand-off and one workflow: HTTP requests to the Resonate server
    (by kind), new TCP connections, SQL statements per batch, loggers, and begin_run latency."""
    import urllib3.connectionpool
    from requests import Session
    from sqlalchemy import event

    from record_deleter.domain.model import RecordId

    http: Counter[str] = Counter()
    http_seconds: Counter[str] = Counter()
    conns = [0]
    lock = threading.Lock()
    # The worker's store adapter talks http.client directly (one keep-alive connection per
    # thread); the SDK's own pieces (its poller, the reference's store) go through requests.
    from http import client as http_client

    from record_deleter.adapters.resonate_runtime import KeepAliveRemoteStore

    def counted_request(orig: Any) -> Any:
        def send(self: Any, request: Any, **kw: Any) -> Any:
            kind = _request_kind(request.method, request.path_url)
            t = time.perf_counter()
            try:
                return orig(self, request, **kw)
            finally:
                with lock:
                    http[kind] += 1
                    http_seconds[kind] += time.perf_counter() - t

        return send

    def counted_connect(orig: Any) -> Any:
        def connect(self: Any) -> Any:
            with lock:
                conns[0] += 1
            return orig(self)

        return connect

    Session.send = counted_request(Session.send)  # type: ignore[method-assign]
    KeepAliveRemoteStore._send = counted_request(KeepAliveRemoteStore._send)  # type: ignore[method-assign]
    pool = urllib3.connectionpool.HTTPConnectionPool
    pool._new_conn = counted_connect(pool._new_conn)  # type: ignore[method-assign]
    http_client.HTTPConnection.connect = counted_connect(http_client.HTTPConnection.connect)  # type: ignore[method-assign]

    runtime, store = _runtime(a, a["batch"])
    sql: Counter[str] = Counter()

    @event.listens_for(store._engine, "before_cursor_execute")
    def count_sql(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        with lock:
            sql[statement.split(maxsplit=1)[0].upper()] += 1

    store.delete_batch(RecordId("warm-up-no-such-record"), 1)
    time.sleep(1.0)

    def snapshot() -> tuple[Counter[str], int, Counter[str]]:
        with lock:
            return Counter(http), conns[0], Counter(sql)

    def loggers() -> int:
        return len(logging.Logger.manager.loggerDict)

    def set_level_us() -> float:
        probe = logging.getLogger("benchmarks.probe")
        t = time.perf_counter()
        for _ in range(50):
            probe.setLevel(logging.INFO)  # clears the cache of every logger in the process
        return (time.perf_counter() - t) / 50 * 1e6

    out: dict[str, Any] = {"loggers_at_start": loggers(), "set_level_us_at_start": set_level_us()}
    # 1) begin_run alone: HTTP requests and latency in the caller's thread
    l0 = loggers()
    h0, c0, _ = snapshot()
    lat = []
    ids = [RecordId(f"{a['prefix']}h{i:04d}") for i in range(a["n"])]
    for i, rid in enumerate(ids):
        t = time.perf_counter()
        runtime.start(rid, i)
        lat.append(time.perf_counter() - t)
    for rid in ids:
        runtime.wait(rid, timeout=120)
    time.sleep(0.5)
    h1, c1, s1 = snapshot()
    lat.sort()
    out["begin_run_p50_ms"] = lat[len(lat) // 2] * 1000
    out["begin_run_p99_ms"] = lat[int(len(lat) * 0.99)] * 1000
    out["per_workflow_http"] = {k: (h1[k] - h0[k]) / a["n"] for k in h1 if h1[k] - h0[k]}
    out["per_workflow_connections"] = (c1 - c0) / a["n"]
    out["per_workflow_sql"] = {k: v / a["n"] for k, v in s1.items()}
    out["per_workflow_loggers"] = (loggers() - l0) / a["n"]
    l1 = loggers()
    # 2) one record with many batches: per-batch costs
    big = RecordId(f"{a['prefix']}big")
    h2, c2, s2 = snapshot()
    runtime.start(big, 0)
    result = runtime.wait(big, timeout=300)
    time.sleep(0.5)
    h3, c3, s3 = snapshot()
    batches = int(result["batches"])
    out["big_batches"] = batches
    out["per_batch_http"] = {k: (h3[k] - h2[k]) / batches for k in h3 if h3[k] - h2[k]}
    out["per_batch_connections"] = (c3 - c2) / batches
    out["per_batch_sql"] = {k: (s3[k] - s2[k]) / batches for k in s3 if s3[k] - s2[k]}
    out["per_batch_loggers"] = (loggers() - l1) / batches
    out["loggers_at_end"] = loggers()
    out["set_level_us_at_end"] = set_level_us()
    # where would the server send this workflow's task if its worker died mid-step?
    import requests

    root = requests.get(f"{a['host']}:{a['port']}/promises/{ids[0].value}", timeout=10).json()
    out["invoke_target"] = (root.get("tags") or {}).get("resonate:invoke")
    out["resonate_group"] = a["resonate_group"]
    out["http_mean_ms"] = {
        k: http_seconds[k] / http[k] * 1000 for k in http if http[k] and "long-poll" not in k
    }
    out["rss_kb"] = _rss_kb()
    return out


SCENARIOS = {
    "promise_create": promise_create,
    "reference": reference,
    "naive": naive,
    "raw_delete": raw_delete,
    "workflow_delete": workflow_delete,
    "profile_counts": profile_counts,
    "store_growth": store_growth,
}


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    name, args = sys.argv[1], json.loads(sys.argv[2])
    result = SCENARIOS[name](args)
    _emit("RESULT", result)
    sys.stdout.flush()
    # SDK threads (the long-poll in particular) cannot be stopped: leave at once.
    import os

    os._exit(0)


if __name__ == "__main__":
    main()
