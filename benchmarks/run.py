"""The benchmark suite: `python -m benchmarks.run [--full]` (normally via `scripts/bench.sh`).

Every figure is the median over repeated runs, with its baseline measured in the same run (in
the same repeat, the order of subjects rotated from one repeat to the next so a drift in the
machine's load hits subjects alike), reported as a ratio. Raw numbers go to
benchmarks/results.json; BENCHMARKS.md is rendered from them (benchmarks.report).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import scenarios as sc
from benchmarks.common import (
    ROOT,
    Database,
    Endpoints,
    Topics,
    create_topics,
    delete_topics,
    handoff_concurrency_support,
    log,
    run_child,
    unique,
)
from benchmarks.profiling import py_spy, summarize


@dataclass
class Mode:
    name: str
    repeats: int
    n: int  # messages / records per run (hand-off, end-to-end)
    growth: list[tuple[int, int]]  # (messages, repeats) for the hand-off growth runs
    growth_reference: bool  # the reference pattern at the growth sizes too
    e2e_workers: tuple[int, ...]
    e2e_dbs: tuple[str, ...]
    hol_small: int
    hol_small_rows: int
    hol_big: int
    hol_dbs: tuple[str, ...]
    del_batches: tuple[int, ...]
    del_batches_per_run: int
    del_rows: int  # at least this many rows per record, whatever the batch (fixed costs amortize)
    del_dbs: tuple[str, ...]
    rows_growth: tuple[int, ...]
    rows_growth_records: int
    rows_growth_repeats: int
    store_sizes: tuple[int, ...]  # completed promises in the server's store at which to probe it
    profile_records: int
    threads: int = 4  # client threads of the threaded promise-create baseline (at least)
    rows_each: int = 10  # rows of each record in hand-off / end-to-end runs (one batch)
    extra: dict[str, Any] = field(default_factory=dict)


QUICK = Mode(
    name="quick",
    repeats=3,
    n=1000,
    growth=[(10_000, 1)],
    growth_reference=False,
    e2e_workers=(1,),
    e2e_dbs=("sqlite", "postgres"),
    hol_small=200,
    hol_small_rows=10,
    hol_big=1_000_000,
    hol_dbs=("postgres",),
    del_batches=(100, 1000, 10_000),
    del_batches_per_run=50,
    del_rows=500_000,
    del_dbs=("sqlite", "postgres"),
    rows_growth=(10, 1000, 5000),
    rows_growth_records=100,
    rows_growth_repeats=1,
    store_sizes=(10_000, 30_000),
    profile_records=600,
)

FULL = Mode(
    name="full",
    repeats=5,
    n=1000,
    growth=[(10_000, 3), (100_000, 1)],
    growth_reference=True,
    e2e_workers=(1, 2),
    e2e_dbs=("sqlite", "postgres"),
    hol_small=200,
    hol_small_rows=10,
    hol_big=3_000_000,
    hol_dbs=("sqlite", "postgres"),
    del_batches=(100, 1000, 10_000),
    del_batches_per_run=200,
    del_rows=2_000_000,
    del_dbs=("sqlite", "postgres"),
    rows_growth=(10, 1000, 5000, 20_000),
    rows_growth_records=200,
    rows_growth_repeats=3,
    store_sizes=(10_000, 30_000, 100_000),
    profile_records=1000,
)

SMOKE = Mode(
    name="smoke",
    repeats=1,
    n=200,
    growth=[(1000, 1)],
    growth_reference=True,
    e2e_workers=(1,),
    e2e_dbs=("sqlite", "postgres"),
    hol_small=50,
    hol_small_rows=10,
    hol_big=100_000,
    hol_dbs=("postgres",),
    del_batches=(100, 1000, 10_000),
    del_batches_per_run=10,
    del_rows=20_000,
    del_dbs=("sqlite", "postgres"),
    rows_growth=(10, 2000),
    rows_growth_records=20,
    rows_growth_repeats=1,
    store_sizes=(2000,),
    profile_records=100,
)

_RESONATE_VARS = (
    "RESONATE_URL",
    "RESONATE_MESSAGE_SOURCE_PORT",
    "RESONATE_HOST",
    "RESONATE_STORE_PORT",
    "RESONATE_PORT_STORE",
    "RESONATE_PORT_MESSAGE_SOURCE",
    "RECORD_DELETER_SERVICES_OWNED",
    "RECORD_DELETER_SERVICES_DIR",
)


def scratch_resonate_possible() -> bool:
    """Can this run start its own Resonate servers (the binary is known, the store is SQLite)?"""
    if os.environ.get("BENCH_SHARED_RESONATE"):
        return False
    return bool(os.environ.get("RESONATE_BIN")) and os.environ.get("RESONATE_STORE", "sqlite") == "sqlite"


SECTIONS = ("handoff", "hol", "deletion", "growth", "profile")


class Suite:
    def __init__(self, mode: Mode, ep: Endpoints, out: Path, workdir: Path, concurrency: int | None) -> None:
        self.mode = mode
        self.ep = ep
        self.out = out
        self.workdir = workdir
        self.logdir = workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.concurrency = concurrency
        self.results: dict[str, Any] = {"runs": {}, "errors": []}
        self.base_ep = ep
        self.cleanup = True
        self.scratch = scratch_resonate_possible()

    @contextlib.contextmanager
    def resonate(self, tag: str, *, cleanup: bool = True) -> Iterator[None]:
        """A fresh Resonate server (scripts/services.sh in a scratch state dir) for the block, so
        no measurement inherits the store or the leftovers of an earlier one; `self.ep` points at
        it meanwhile. Without a server binary (external endpoints) the shared server is used and
        every run cleans up after itself."""
        if not self.scratch:
            yield
            return
        d = self.workdir / f"resonate-{tag}-{unique('')}"
        env = {k: v for k, v in os.environ.items() if k not in _RESONATE_VARS}
        env["RECORD_DELETER_SERVICES_DIR"] = str(d)
        script = str(ROOT / "scripts" / "services.sh")
        up = subprocess.run([script, "up", "resonate"], env=env, capture_output=True, text=True, check=False)
        if up.returncode != 0:
            raise RuntimeError(f"scratch Resonate server did not start: {up.stderr[-1500:]}")
        try:
            values = dict(
                line.removeprefix("export ").split("=", 1)
                for line in (d / "env").read_text().splitlines()
                if line.startswith("export ") and "=" in line
            )
            self.ep = replace(
                self.base_ep,
                resonate_url=values["RESONATE_URL"],
                resonate_poll_port=values["RESONATE_MESSAGE_SOURCE_PORT"],
                resonate_pid=int((d / "resonate.pid").read_text().strip()),
                resonate_dir=d,
            )
            self.cleanup = cleanup
            yield
        finally:
            self.ep, self.cleanup = self.base_ep, True
            subprocess.run([script, "down", "resonate"], env=env, capture_output=True, check=False)

    # -------------------------------------------------------------------------------- helpers
    def record(self, section: str, subject: str, value: dict[str, Any]) -> None:
        self.results["runs"].setdefault(section, {}).setdefault(subject, []).append(value)
        self.save()

    def save(self) -> None:
        self.out.write_text(json.dumps(self.results, indent=1, default=str))

    def attempt(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one measurement; a failure is recorded (and reported) instead of ending the suite."""
        t = time.monotonic()
        try:
            value = fn()
        except Exception as exc:
            log(f"FAILED {what}: {exc}")
            self.results["errors"].append({"what": what, "error": f"{type(exc).__name__}: {exc}"[:2000]})
            self.save()
            traceback.print_exc(file=sys.stderr)
            return None
        log(f"{what}: {_brief(value)} ({time.monotonic() - t:.1f}s)")
        return value

    @staticmethod
    def rotate(items: list[Any], k: int) -> list[Any]:
        k %= max(1, len(items))
        return items[k:] + items[:k]

    # ----------------------------------------------------------- 1 + 2: hand-off, end-to-end
    def handoff_and_e2e(self) -> None:
        m = self.mode
        for r in range(m.repeats):
            log(f"== hand-off / end-to-end: repeat {r + 1}/{m.repeats} (n={m.n})")
            dbs = {kind: Database.create(kind, self.ep) for kind in {*m.e2e_dbs, "sqlite"}}
            try:
                with self.resonate(f"handoff{r}"):
                    subjects: list[Callable[[], None]] = [
                        partial(self._create, "handoff", m.n, 1),
                        partial(self._create, "handoff", m.n, m.threads),
                        partial(self._reference, "handoff", dbs["sqlite"], m.n, "reference"),
                    ]
                    for kind in m.e2e_dbs:
                        subjects += [partial(self._e2e, dbs[kind], w) for w in m.e2e_workers]
                        subjects.append(partial(self._naive_e2e, dbs[kind]))
                    if 2 not in m.e2e_workers:
                        subjects.append(
                            partial(self._handoff_only, "handoff", dbs["sqlite"], m.n, 2, "worker2")
                        )
                    for fn in self.rotate(subjects, r):
                        fn()
            finally:
                for db in dbs.values():
                    db.drop()

    def _ids(self, db: Database, n: int, rows: int | None = None) -> list[str]:
        return db.seed_many(unique("h") + "-", n, self.mode.rows_each if rows is None else rows)

    def _create(self, section: str, n: int, threads: int, suffix: str = "") -> None:
        v = self.attempt(
            f"promise create x{threads} n={n:,}",
            lambda: sc.promise_create_run(self.ep, n, threads, keepalive=True),
        )
        if v:
            self.record(section, f"promise_create_{'seq' if threads == 1 else 'threads'}{suffix}", v)

    def _reference(self, section: str, db: Database, n: int, subject: str) -> None:
        ids = self._ids(db, n)
        v = self.attempt(
            f"reference pattern n={n:,} (hand-off only)",
            lambda: sc.reference_run(
                self.ep, db, ids, drain=False, cleanup=self.cleanup, logdir=self.logdir, timeout=3600
            ),
        )
        if v:
            self.record(section, subject, v)

    def _handoff_only(self, section: str, db: Database, n: int, workers: int, subject: str) -> None:
        ids = self._ids(db, n)
        v = self.attempt(
            f"worker x{workers} n={n:,} (hand-off only)",
            lambda: sc.worker_run(
                self.ep,
                db,
                ids,
                workers=workers,
                drain=False,
                raw_consume=workers == 1,
                handoff_concurrency=self.concurrency,
                cleanup=self.cleanup,
                logdir=self.logdir,
                timeout=3600,
            ),
        )
        if v:
            self.record(section, subject, v)

    def _e2e(self, db: Database, workers: int) -> None:
        ids = self._ids(db, self.mode.n)
        v = self.attempt(
            f"worker x{workers} {db.kind} n={self.mode.n:,} (drain)",
            lambda: sc.worker_run(
                self.ep,
                db,
                ids,
                workers=workers,
                raw_consume=(db.kind == "sqlite" and workers == 1),
                handoff_concurrency=self.concurrency,
                logdir=self.logdir,
            ),
        )
        if v:
            v["latency"] = sc.latency_summary(v.pop("latencies", []))
            self.record("e2e", f"worker{workers}_{db.kind}", v)
            if db.kind == "sqlite":  # the hand-off phase of this run is the hand-off measurement
                self.record("handoff", f"worker{workers}", v)
                if "raw_consume_rate" in v:
                    self.record("handoff", "raw_consume", {"rate": v["raw_consume_rate"]})

    def _naive_e2e(self, db: Database) -> None:
        ids = self._ids(db, self.mode.n)
        v = self.attempt(
            f"naive sequential {db.kind} n={self.mode.n:,}",
            lambda: sc.naive_run(self.ep, db, ids, logdir=self.logdir),
        )
        if v:
            self.record("e2e", f"naive_{db.kind}", v)

    # ------------------------------------------------------------------ 3: head-of-line latency
    def hol(self) -> None:
        m = self.mode
        for r in range(m.repeats):
            for kind in m.hol_dbs:
                log(
                    f"== head-of-line {kind}: repeat {r + 1}/{m.repeats} "
                    f"({m.hol_big:,} rows + {m.hol_small} records)"
                )
                db = Database.create(kind, self.ep)
                try:
                    with self.resonate(f"hol{r}{kind}"):
                        for subject in self.rotate(["behind", "solo", "naive"], r):
                            self._hol_run(db, subject)
                finally:
                    db.drop()

    def _hol_run(self, db: Database, subject: str) -> None:
        m = self.mode
        big = unique("big-")
        if subject != "solo":
            db.seed_one(big, m.hol_big)
        small = db.seed_many(unique("s") + "-", m.hol_small, m.hol_small_rows)
        ids = small if subject == "solo" else [big, *small]
        if subject == "naive":
            v = self.attempt(
                f"HOL naive behind big ({db.kind})",
                lambda: sc.naive_run(self.ep, db, ids, partitions=1, latency_ids=small, logdir=self.logdir),
            )
            name = f"naive_behind_{db.kind}"
        else:
            v = self.attempt(
                f"HOL worker {subject} ({db.kind})",
                lambda: sc.worker_run(
                    self.ep,
                    db,
                    ids,
                    partitions=1,
                    complete_ids=small,
                    handoff_concurrency=self.concurrency,
                    max_in_flight=None,
                    logdir=self.logdir,
                ),
            )
            name = f"worker_{subject}_{db.kind}"
        if v:
            self.record("hol", name, _hol(v))

    # --------------------------------------------------------------- 4: deletion efficiency
    def deletion(self) -> None:
        m = self.mode
        for r in range(m.repeats):
            for kind in m.del_dbs:
                log(f"== deletion {kind}: repeat {r + 1}/{m.repeats}")
                db = Database.create(kind, self.ep)
                try:
                    with self.resonate(f"del{r}{kind}"):
                        for batch in m.del_batches:
                            rows = max(batch * m.del_batches_per_run, m.del_rows)
                            subjects = ["sql", "store", "workflow"]
                            if batch == 1000:
                                subjects.append("workflow_per_batch")  # a checkpoint per batch
                            for subject in self.rotate(subjects, r):
                                v = self.attempt(
                                    f"delete {rows:,} rows batch {batch} via {subject} ({kind})",
                                    partial(sc.deletion_run, self.ep, db, rows, batch, subject),
                                )
                                if v:
                                    self.record("deletion", f"{kind}_{batch}_{subject}", v)
                finally:
                    db.drop()

    # ------------------------------------------------------------------------------ 5: growth
    def growth(self) -> None:
        m = self.mode
        for n, repeats in m.growth:
            for r in range(repeats):
                log(f"== growth n={n:,}: repeat {r + 1}/{repeats}")
                db = Database.create("sqlite", self.ep)
                try:
                    subjects: list[Callable[[], None]] = [
                        partial(self._handoff_only, "growth", db, n, 1, f"worker1_{n}"),
                        partial(self._create, "growth", n, m.threads, f"_{n}"),
                    ]
                    if m.growth_reference:
                        subjects.append(partial(self._reference, "growth", db, n, f"reference_{n}"))
                    for k, fn in enumerate(self.rotate(subjects, r)):
                        # each subject on a fresh server that is thrown away after it: nothing to
                        # clean up (cancelling 10k+ orphaned workflows takes minutes)
                        with self.resonate(f"growth{n}-{r}-{k}", cleanup=False):
                            fn()
                finally:
                    db.drop()
        # the server's store: sequential create rate as completed promises accumulate
        if self.scratch and m.store_sizes:
            log(f"== growth: server store up to {m.store_sizes[-1]:,} completed promises")
            with self.resonate("store", cleanup=False):
                v = self.attempt(
                    "server create rate vs store size",
                    lambda: run_child(
                        "store_growth",
                        {
                            "host": self.ep.resonate_host,
                            "port": self.ep.resonate_port,
                            "sizes": list(m.store_sizes),
                            "n": 500,
                        },
                        timeout=1800,
                    ),
                )
                if v:
                    self.results["store_growth"] = v
        # rows per record: end-to-end, SQLite, one worker vs the naive consumer
        for r in range(m.rows_growth_repeats):
            db = Database.create("sqlite", self.ep)
            try:
                with self.resonate(f"rows{r}"):
                    for rows in m.rows_growth:
                        log(f"== growth rows/record={rows:,}: repeat {r + 1}/{m.rows_growth_repeats}")
                        for subject in self.rotate(["worker", "naive"], r):
                            self._rows_run(db, rows, subject)
            finally:
                db.drop()

    def _rows_run(self, db: Database, rows: int, subject: str) -> None:
        ids = self._ids(db, self.mode.rows_growth_records, rows)
        if subject == "worker":
            v = self.attempt(
                f"worker x1 {len(ids)} records x {rows:,} rows",
                lambda: sc.worker_run(
                    self.ep, db, ids, handoff_concurrency=self.concurrency, logdir=self.logdir
                ),
            )
        else:
            v = self.attempt(
                f"naive {len(ids)} records x {rows:,} rows",
                lambda: sc.naive_run(self.ep, db, ids, logdir=self.logdir),
            )
        if v:
            v.pop("latencies", None)
            v.pop("timeline", None)
            v["rows_per_record"] = rows
            self.record("rows_growth", f"{subject}_{rows}", v)

    # ----------------------------------------------------------------------------- profile
    def profile(self) -> None:
        log("== profile")
        db = Database.create("sqlite", self.ep)
        try:
            with self.resonate("profile"):
                self._profile(db)
        finally:
            db.drop()

    def _profile(self, db: Database) -> None:
        m, ep = self.mode, self.ep
        prefix = unique("pf") + "-"
        db.seed_many(prefix + "h", 100, m.rows_each)
        db.seed_one(prefix + "big", 30 * 1000)
        topics = Topics.fresh("pf")
        create_topics(ep.kafka, topics, 1)
        args = {
            "host": ep.resonate_host,
            "port": ep.resonate_port,
            "poll_port": ep.resonate_poll_port,
            "resonate_group": unique("bench-pfrg-"),
            "bootstrap": ep.kafka,
            "done_topic": topics.completion,
            "failed_topic": topics.failure,
            "db_url": db.url,
            "batch": 1000,
            "prefix": prefix,
            "n": 100,
        }
        try:
            v = self.attempt(
                "profile counts (100 workflows + one of 30 batches)",
                partial(run_child, "profile_counts", args),
            )
            if v:
                self.results["profile_counts"] = v
        finally:
            delete_topics(ep.kafka, topics)
        for r in range(m.repeats):  # what-if: the raw create loop with keep-alive connections
            for keepalive in self.rotate([False, True], r):
                v = self.attempt(
                    f"promise create sequential n={m.n:,} keepalive={keepalive}",
                    partial(sc.promise_create_run, ep, m.n, 1, keepalive),
                )
                if v:
                    self.record("keepalive", "keepalive" if keepalive else "new_connection", v)
        if py_spy() is None:
            self.results["errors"].append({"what": "py-spy profile", "error": "py-spy not installed"})
            return
        ids = db.seed_many(unique("pw") + "-", m.profile_records, m.rows_each)
        raw = self.workdir / "worker-profile"
        v = self.attempt(
            f"py-spy worker x1 {m.profile_records} records (drain)",
            lambda: sc.worker_run(
                ep, db, ids, handoff_concurrency=self.concurrency, profile_to=raw, logdir=self.logdir
            ),
        )
        if v:
            v.pop("latencies", None)
            v.pop("timeline", None)
            self.results["profile_worker"] = {
                "run": v,
                "handoff_phase": summarize(raw.with_name(raw.name + ".handoff.txt")),
                "drain_phase": summarize(raw.with_name(raw.name + ".drain.txt")),
                "raw": str(raw) + ".{handoff,drain}.txt",
            }


def _hol(v: dict[str, Any]) -> dict[str, Any]:
    lat = v.pop("latencies", [])
    v.pop("timeline", None)
    v["latency"] = sc.latency_summary(lat)
    v["latency_min"] = min(lat) if lat else None
    v["latencies"] = lat
    return v


def _brief(v: Any) -> str:
    if not isinstance(v, dict):
        return str(v)[:120]
    keys = ("handoff_rate", "e2e_rate", "rate", "latency", "rss_kb")
    parts = []
    for k in keys:
        if k in v:
            x = v[k]
            if isinstance(x, float):
                parts.append(f"{k}={x:,.1f}")
            elif isinstance(x, dict):
                parts.append(f"{k}=" + ",".join(f"{a}:{b:.2f}" for a, b in x.items()))
            else:
                parts.append(f"{k}={x}")
    return " ".join(parts)


def facts(ep: Endpoints) -> dict[str, Any]:
    from importlib.metadata import version

    import confluent_kafka

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except Exception:
            return "?"

    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    pg = "?"
    if ep.postgres:
        try:
            from sqlalchemy import create_engine, text

            engine = create_engine(ep.postgres)
            with engine.connect() as conn:
                pg = str(conn.execute(text("SHOW server_version")).scalar_one())
            engine.dispose()
        except Exception as exc:
            pg = f"? ({exc})"
    import sqlite3

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kafka": os.environ.get("BENCH_KAFKA_VERSION", "? (external broker)"),
        "resonate_server": os.environ.get("BENCH_RESONATE_VERSION", "? (external server)"),
        "resonate_store": os.environ.get(
            "RESONATE_STORE", "sqlite" if "BENCH_RESONATE_VERSION" in os.environ else "?"
        ),
        "postgres": pg,
        "sqlite": sqlite3.sqlite_version,
        "resonate_sdk": ver("resonate-sdk"),
        "confluent_kafka": ver("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "sqlalchemy": ver("SQLAlchemy"),
        "psycopg": ver("psycopg"),
        "py_spy": ver("py-spy"),
        "load_before": os.getloadavg(),
    }


def git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return rev.strip() + (" + uncommitted changes in src/" if dirty.strip() else "")
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--full", action="store_true", help="the long suite (more repeats, 100k messages)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: checks the harness (~3 min)")
    p.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections (default: all of {','.join(SECTIONS)})",
    )
    p.add_argument("--repeats", type=int, default=None, help="override the mode's repeats")
    p.add_argument("-n", type=int, default=None, help="override messages per hand-off / end-to-end run")
    p.add_argument(
        "--handoff-concurrency",
        type=int,
        default=None,
        help="WORKER_HANDOFF_CONCURRENCY for the workers (default: the tree's own default)",
    )
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results.json"), help="raw results (JSON)")
    p.add_argument("--report", default=str(ROOT / "BENCHMARKS.md"), help="the Markdown report")
    p.add_argument("--workdir", default=None, help="logs and profiles (default: a new temp dir)")
    p.add_argument("--command", default=None, help="the command line to print in the report")
    args = p.parse_args(argv)

    mode = FULL if args.full else SMOKE if args.smoke else QUICK
    if args.repeats:
        mode.repeats = args.repeats
    if args.n:
        mode.n = args.n
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    ep = Endpoints.from_env()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rd-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    supported, default_conc = handoff_concurrency_support()
    if args.handoff_concurrency is not None and not supported:
        log("WORKER_HANDOFF_CONCURRENCY is not a setting of this tree: measuring the sequential hand-off")
    # the threaded raw-create baseline gets at least as many client threads as the worker has
    # hand-offs in flight, so the ratio compares like with like
    mode.threads = max(mode.threads, (args.handoff_concurrency or default_conc or 1) if supported else 1)
    suite = Suite(mode, ep, Path(args.results), workdir, args.handoff_concurrency if supported else None)
    started = time.time()
    suite.results.update(
        mode=asdict(mode),
        sections=sections,
        command=args.command or " ".join(["python -m benchmarks.run", *(argv or sys.argv[1:])]),
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        git=git_rev(),
        facts=facts(ep),
        handoff_concurrency={
            "supported": supported,
            "default": default_conc,
            "used": args.handoff_concurrency if supported else None,
        },
        workdir=str(workdir),
    )
    log(f"mode {mode.name}, sections {sections}, logs in {workdir}")
    runners = {
        "handoff": suite.handoff_and_e2e,
        "hol": suite.hol,
        "deletion": suite.deletion,
        "growth": suite.growth,
        "profile": suite.profile,
    }
    for section in sections:
        t = time.monotonic()
        try:
            runners[section]()
        except Exception as exc:
            log(f"section {section} failed: {exc}")
            traceback.print_exc(file=sys.stderr)
            suite.results["errors"].append(
                {"what": f"section {section}", "error": f"{type(exc).__name__}: {exc}"}
            )
        suite.results.setdefault("section_seconds", {})[section] = time.monotonic() - t
        suite.save()
    suite.results["seconds"] = time.time() - started
    suite.results["load_after"] = os.getloadavg()
    suite.save()
    from benchmarks.report import render

    Path(args.report).write_text(render(suite.results))
    log(f"done in {suite.results['seconds'] / 60:.1f} min: {args.report}, {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
