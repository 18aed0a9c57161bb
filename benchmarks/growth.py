"""The growth section: does a subject's cost per record stay flat as a run grows?

One run per (subject, size n): n one-batch records (10 rows each) in a fresh SQLite database, 4
partitions, batch 1,000, pause 0, and otherwise the subject's defaults; for the worker that means
its default WORKER_MAX_IN_FLIGHT (the hand-off section sets 0 to see the hand-off's own pace; here
the backlog has to wait in Kafka, as it does in production). A paced producer sends the requests in
chunks (every 50 ms, the messages due by then) at `rate` msg/s, by default above both subjects'
capacity, so a backlog builds within seconds and the subject is saturated from the first record
to the last. It makes each chunk's messages as it sends them: it never holds more than a chunk
plus what the Kafka client has not yet delivered. Each run is measured once (no repeats): its
fifths are its own comparison.

Figures of a run, all timed from the start of producing (t0):

* `durable_rate`, `e2e_rate`: handoff.py's end-to-end figures: n ÷ the time until the subject's
  own durable store holds all n workflows finished (its `finished` hook, polled every 50 ms once
  every completion is in; `finished_query_seconds` is what one such query takes at the end), and
  n ÷ the time until the last completion's timestamp;
* `fifths`: the completions ordered by their timestamps and cut into five fifths of n/5 records;
  fifth k's rate = its records ÷ (its last completion - the previous fifth's last completion), the
  first fifth's from t0. `fifth_ratio` = last ÷ first (the goal is ≥ 0.80: the last fifth runs with
  everything the run left behind it in the database, the Resonate server's store and Kafka);
* `rss_kb`: the subject's peak RSS (VmHWM, sampled every second during the run);
* `cpu_per_1000`: CPU seconds per 1,000 records of the subject, its Resonate server, Kafka and
  PostgreSQL from t0 to the last completion, as in the hand-off section;
* `curve`: [seconds, records completed] at every 1% of n; `produced`: [seconds, records produced]
  (what benchmarks/plot.py draws); `paused`: how often the worker paused its consumer at its
  in-flight bound.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka import KafkaError, Producer
from sqlalchemy import text
from tests.harness import CpuMeter, Event, EventLog, service_pids, topic_reader
from tests.harness.database import engine

from benchmarks import handoff
from benchmarks.handoff import Run, Subject

RATE = 400.0  # msg/s: above both subjects' end-to-end capacity on 2 cores (~100 records/s)
DBOS_MAX = 10_000  # DBOS's runs stop at this size by default (its 100,000 would take hours)
MIN_RATE = 5.0  # records/s: a run slower than this on average is cut off (300 s + n / MIN_RATE)
TICK = 0.05  # s: the producer sends the messages due every TICK
CURVE_POINTS = 100
SEED_CHUNK = 5_000  # records seeded per transaction


@dataclass
class Options:
    sizes: tuple[int, ...]
    rate: float = RATE
    dbos_max: int = DBOS_MAX
    partitions: int = 4
    batch: int = 1000


def default_worker_env(run: Run) -> dict[str, str]:
    """handoff.worker_env without its WORKER_MAX_IN_FLIGHT=0: the worker's default bound applies
    (unless the run's settings name one)."""
    env = handoff.worker_env(run)
    if "WORKER_MAX_IN_FLIGHT" not in dict(run.settings):
        del env["WORKER_MAX_IN_FLIGHT"]
    return env


SUBJECTS: dict[str, Subject] = {
    "worker": replace(handoff.SUBJECTS["worker"], env=default_worker_env),
    "dbos": handoff.SUBJECTS["dbos"],
}


def record_id(tag: str, i: int) -> str:
    return f"{tag}-{i:07d}"


def seed(url: str, tag: str, n: int, rows_each: int) -> None:
    """Records record_id(tag, 0..n-1), `rows_each` rows each, SEED_CHUNK records a transaction."""
    db = engine(url)
    try:
        for lo in range(0, n, SEED_CHUNK):
            ids = [record_id(tag, i) for i in range(lo, min(n, lo + SEED_CHUNK))]
            with db.begin() as conn:
                conn.execute(text("INSERT INTO records (id) VALUES (:id)"), [{"id": i} for i in ids])
                conn.execute(
                    text("INSERT INTO record_rows (record_id, payload) VALUES (:id, :p)"),
                    [{"id": i, "p": f"row {x}"} for i in ids for x in range(1, rows_each + 1)],
                )
    finally:
        db.dispose()


class Tally(EventLog):
    """Counts a process's events by name and keeps none (a large run emits several per record)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def append(self, event: Event) -> None:  # one reader thread per process: no lock needed
        self.counts[event.name] += 1


class PacedProducer:
    """Produces requests record_id(tag, 0..n-1) (value: the JSON id, key: the id) at `rate` msg/s
    from `t0` on, in a thread: every TICK s, the messages due by then."""

    def __init__(self, bootstrap: str, topic: str, tag: str, n: int, rate: float, t0: float) -> None:
        self.bootstrap, self.topic, self.tag, self.n, self.rate, self.t0 = bootstrap, topic, tag, n, rate, t0
        self.marks: list[tuple[float, int]] = [(0.0, 0)]  # (seconds since t0, produced)
        self.delivered = 0
        self.errors: list[str] = []
        self.error: BaseException | None = None
        self.seconds: float | None = None  # t0 to the last acknowledgement
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-producer", daemon=True)
        self._thread.start()

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.errors.append(err.str())
        else:
            self.delivered += 1

    def _run(self) -> None:
        try:
            self._produce()
            self.seconds = time.time() - self.t0
        except BaseException as exc:  # reported by the measuring thread
            self.error = exc

    def _produce(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "log_level": 0})
        sent = 0
        while sent < self.n and not self._stop.is_set():
            due = min(self.n, math.floor((time.time() - self.t0) * self.rate) + 1)
            for i in range(sent, due):
                rid = record_id(self.tag, i)
                producer.produce(
                    self.topic,
                    value=json.dumps(rid).encode(),
                    key=rid.encode(),
                    on_delivery=self._on_delivery,
                )
            if due > sent:
                sent = due
                self.marks.append((time.time() - self.t0, sent))
            producer.poll(0)
            if self.errors:
                break
            self._stop.wait(TICK)
        if producer.flush(120) or self.errors or (sent == self.n and self.delivered < self.n):
            raise RuntimeError(f"{self.delivered}/{sent} requests delivered: {self.errors[:3]}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(150)


def fifths(times: list[float], t0: float) -> list[float]:
    """Completion rates of the five fifths of the sorted completion `times` (see the module doc)."""
    n = len(times)
    ends = [t0] + [times[k * n // 5 - 1] for k in range(1, 6)]
    counts = [k * n // 5 - (k - 1) * n // 5 for k in range(1, 6)]
    return [c / max(ends[k + 1] - ends[k], 1e-3) for k, c in enumerate(counts)]


def thin(points: list[tuple[float, int]], most: int) -> list[list[float]]:
    """At most `most` + 1 of `points` (first and last kept), times rounded to ms."""
    step = max(1, math.ceil((len(points) - 1) / most))
    kept = points[::step] + ([points[-1]] if (len(points) - 1) % step else [])
    return [[round(t, 3), c] for t, c in kept]


def measure(subject: Subject, run: Run, tag: str, n: int, rate: float) -> dict[str, Any]:
    """Start the subject, produce n paced requests, time every completion; see the module doc."""
    procs = handoff.start(subject, run, tag, events=Tally)
    services = {k: v for k, v in service_pids().items() if k in ("kafka", "postgres")}
    pids = {**{f"subject{k}": p.pid for k, p in enumerate(procs)}, **services}
    if run.resonate is not None:
        pids["resonate"] = run.resonate.pid
    timeout = 300 + n / MIN_RATE
    producer: PacedProducer | None = None
    try:
        with topic_reader(run.bootstrap, run.topics.completion) as reader:
            meter = CpuMeter(pids)
            t0 = time.time()
            producer = PacedProducer(run.bootstrap, run.topics.request, tag, n, rate, t0)
            done: dict[str, float] = {}
            watch = handoff.Watch(subject, procs, timeout)
            while len(done) < n:
                handoff.note_completions(reader.poll(0.05), done)  # seen at most 50 ms late
                reader.messages.clear()  # the reader would keep every completion
                if producer.error is not None:
                    raise RuntimeError(f"paced producer: {producer.error}") from producer.error
                watch.check(len(done), n)
            cpu = meter.stop()
        producer.stop()
        if producer.error is not None:
            raise RuntimeError(f"paced producer: {producer.error}") from producer.error
        last = max(done.values())
        finished, query = last, None
        if subject.finished is not None:
            finished = handoff.durably_finished(subject, run, n, procs, watch.deadline)
            q = time.monotonic()
            subject.finished(run, n)
            query = time.monotonic() - q
    finally:
        if producer is not None:
            producer.stop()
        for p in procs:
            p.stop()
    assert producer is not None
    times = sorted(done.values())
    rates = fifths(times, t0)
    step = n / CURVE_POINTS
    curve = [(0.0, 0)] + [
        (times[c - 1] - t0, c) for c in sorted({max(1, round(k * step)) for k in range(1, CURVE_POINTS + 1)})
    ]
    tallies = [p.events for p in procs if isinstance(p.events, Tally)]
    return {
        "n": n,
        "database": "sqlite",
        "target_rate": rate,
        "produce_seconds": producer.seconds,
        "produce_rate": n / producer.seconds if producer.seconds else None,
        "durable_seconds": finished - t0,
        "durable_rate": n / (finished - t0),
        "finished_query_seconds": query,
        "e2e_seconds": last - t0,
        "e2e_rate": n / (last - t0),
        "fifths": [round(r, 2) for r in rates],
        "fifth_ratio": rates[-1] / rates[0],
        "rss_kb": max(p.peak_rss_kb for p in procs),
        "cpu_per_1000": {
            "subject": sum(v for k, v in cpu.items() if k.startswith("subject")) * 1000 / n,
            **{k: v * 1000 / n for k, v in cpu.items() if k in ("resonate", "kafka", "postgres", "harness")},
        },
        "paused": sum(t.counts["paused"] for t in tallies),
        "curve": thin(curve, CURVE_POINTS),
        "produced": thin(producer.marks, CURVE_POINTS // 2),
    }
