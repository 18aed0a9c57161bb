"""The benchmark suite: `python -m benchmarks.run [--smoke|--full]` (normally via `scripts/bench.sh`).

Sections: `handoff` (hand-off and end-to-end rates of the worker against the naive sequential
consumer, a DBOS Transact peer and the server's raw promise-create rate; `--subjects` picks some),
`deletion` (rows/s by batch size), `growth` (runs of 1,000 to 100,000 records fed by a paced
producer: does the rate hold from the first fifth of a run to the last, and the memory stay
bounded; benchmarks/growth.py) and `scaleout` (1 and 2 workers started at once on a backlog: each
one's share of it, and the rate; benchmarks/scaleout.py). Every repeat measures each subject and
its baselines back to back, in an order that rotates from one repeat to the next, so a drift in
the machine's load hits them alike; the report gives medians over repeats and medians of the
per-repeat ratios. Raw figures go to benchmarks/results.json, the tables into BENCHMARKS.md's
generated block (benchmarks.report); the interpretation around them is written by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tests.harness import ROOT, ResonateServer, Topics, kafka_bootstrap, scratch_database, unique
from tests.harness.database import empty_database, engine, seed

from benchmarks import deletion, growth, handoff, scaleout
from benchmarks.handoff import SUBJECTS, Run, Subject


@dataclass
class Mode:
    name: str
    repeats: int
    n: int  # records per hand-off run, `rows_each` rows each (one batch)
    batches_per_run: int  # deletion: a record of max(batch x this, del_rows) rows
    del_rows: int
    rows_each: int = 10
    # (subject, database) pairs of the hand-off section; a new subject goes here and in handoff.SUBJECTS
    subjects: tuple[tuple[str, str], ...] = (
        ("worker", "sqlite"),
        ("worker2", "sqlite"),
        ("naive", "sqlite"),
        ("dbos", "sqlite"),
        ("worker", "postgres"),
        ("naive", "postgres"),
        ("dbos", "postgres"),
    )
    batches: tuple[int, ...] = (100, 1000, 10_000)
    create_threads: int = 8
    growth_sizes: tuple[int, ...] = (1000, 10_000)  # records per growth run (each size once)
    scaleout_n: int = 1000  # records of the backlog per scale-out run


MODES = {
    "smoke": Mode(
        "smoke",
        repeats=1,
        n=100,
        batches_per_run=10,
        del_rows=20_000,
        growth_sizes=(300, 1000),
        scaleout_n=300,
    ),
    "quick": Mode("quick", repeats=3, n=1000, batches_per_run=50, del_rows=500_000),
    "full": Mode(
        "full",
        repeats=5,
        n=1000,
        batches_per_run=200,
        del_rows=2_000_000,
        growth_sizes=(1000, 10_000, 100_000),
    ),
}
SECTIONS = ("handoff", "deletion", "growth", "scaleout")
CREATE = "create"  # the raw promise-create baseline: a `--subjects` name like the subjects'


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Suite:
    def __init__(
        self,
        mode: Mode,
        out: Path,
        workdir: Path,
        settings: dict[str, str],
        subjects: frozenset[str] = frozenset((*SUBJECTS, CREATE)),
        growth_options: growth.Options | None = None,
        scaleout_options: scaleout.Options | None = None,
    ) -> None:
        self.mode, self.out, self.workdir, self.settings = mode, out, workdir, settings
        self.subjects = subjects
        self.growth_options = growth_options or growth.Options(mode.growth_sizes)
        self.scaleout_options = scaleout_options or scaleout.Options(mode.scaleout_n)
        self.bootstrap = kafka_bootstrap()
        url = os.environ.get("DATABASE_URL", "")
        self.postgres = url if url.startswith("postgresql") else None
        self.results: dict[str, Any] = {"runs": {}, "errors": []}

    def save(self) -> None:
        self.out.write_text(dump(self.results) + "\n")

    def attempt(self, section: str, key: str, repeat: int, fn: Callable[[], dict[str, Any]]) -> None:
        """One measurement; a failure is recorded and reported instead of ending the suite."""
        t = time.monotonic()
        try:
            value = {"repeat": repeat, **fn()}
        except Exception as exc:
            log(f"FAILED {section} {key}: {exc}")
            traceback.print_exc(file=sys.stderr)
            self.results["errors"].append(
                {"what": f"{section} {key}", "error": f"{type(exc).__name__}: {exc}"[:2000]}
            )
        else:
            log(f"{section} {key}: {_brief(value)} ({time.monotonic() - t:.1f}s)")
            self.results["runs"].setdefault(section, {}).setdefault(key, []).append(value)
        self.save()

    @contextlib.contextmanager
    def resonate(self, tag: str) -> Iterator[ResonateServer]:
        """A fresh Resonate server for one run (SQLite store), thrown away after it."""
        directory = self.workdir / f"resonate-{tag}-{unique('s')}"
        directory.mkdir(parents=True)
        with ResonateServer(directory) as server:
            yield server

    def run_of(
        self, db_url: str, tag: str, *, partitions: int, batch: int, server: ResonateServer | None
    ) -> Run:
        topics = Topics.fresh(f"bench-{tag}").create(self.bootstrap, partitions)
        return Run(
            self.bootstrap,
            topics,
            unique(f"bench-{tag}-g"),
            db_url,
            partitions,
            batch,
            self.workdir,
            server,
            tuple(self.settings.items()),
        )

    def databases(self) -> list[str]:
        if self.postgres is None:
            self.results["errors"].append({"what": "postgres", "error": "DATABASE_URL names no PostgreSQL"})
        return ["sqlite", "postgres"] if self.postgres else ["sqlite"]

    # ------------------------------------------------------------------------------ hand-off
    def handoff(self) -> None:
        m = self.mode
        dbs = self.databases()
        items: list[tuple[str, str]] = [(s, d) for s, d in m.subjects if d in dbs and s in self.subjects]
        if CREATE in self.subjects:
            items += [
                (CREATE, "1"),
                (CREATE, str(max(m.create_threads, int(self.settings.get("WORKER_HANDOFF_CONCURRENCY", 0))))),
            ]
        for r in range(m.repeats):
            log(f"== hand-off: repeat {r + 1}/{m.repeats}, n={m.n}")
            with contextlib.ExitStack() as stack:
                urls = {kind: stack.enter_context(scratch_database(kind, self.postgres)) for kind in dbs}
                for name, arg in rotate(items, r):
                    if name == CREATE:
                        self.attempt("handoff", f"create{arg}", r, lambda t=int(arg): self._create(t))
                    else:
                        key, fn = f"{name}:{arg}", lambda s=name, u=urls[arg]: self._subject(s, u)
                        self.attempt("handoff", key, r, fn)

    def _create(self, threads: int) -> dict[str, Any]:
        with self.resonate("create") as server:
            return handoff.promise_create_rate(server.url, self.mode.n, threads)

    def _subject(self, name: str, db_url: str) -> dict[str, Any]:
        subject, tag = SUBJECTS[name], unique(name)
        ids = [f"{tag}-{i:06d}" for i in range(self.mode.n)]
        db = engine(db_url)
        seed(db, dict.fromkeys(ids, self.mode.rows_each), vacuum=True)
        db.dispose()
        with self.subject_run(subject, name, db_url, tag, partitions=4, batch=1000) as run:
            return handoff.measure(subject, run, ids, tag)

    @contextlib.contextmanager
    def subject_run(
        self, subject: Subject, name: str, db_url: str, tag: str, *, partitions: int, batch: int
    ) -> Iterator[Run]:
        """A run of `subject` on fresh topics, with its own Resonate server or system database if it
        needs one; all of them thrown away after."""
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(self.resonate(tag)) if subject.durable else None
            system_db = None
            if subject.system_db:
                if self.postgres is None:
                    raise RuntimeError(
                        f"{subject.title}: its system database needs PostgreSQL (DATABASE_URL)"
                    )
                system_db = stack.enter_context(empty_database(self.postgres, f"{name}_sys"))
            run = replace(
                self.run_of(db_url, tag, partitions=partitions, batch=batch, server=server),
                system_db=system_db,
            )
            try:
                yield run
            finally:
                run.topics.delete(self.bootstrap)

    # ------------------------------------------------------------------------------ growth
    def growth(self) -> None:
        """Each size once; at each size the subjects back to back, in an order rotating by size."""
        o = self.growth_options
        for k, n in enumerate(o.sizes):
            names = [s for s in growth.SUBJECTS if s in self.subjects and (s != "dbos" or n <= o.dbos_max)]
            log(f"== growth: n={n:,}, producing at {o.rate:,.0f} msg/s, subjects {names}")
            for name in rotate(names, k):
                self.attempt("growth", f"{name}:{n}", 0, functools.partial(self._growth, name, n))

    def _growth(self, name: str, n: int) -> dict[str, Any]:
        o, subject, tag = self.growth_options, growth.SUBJECTS[name], unique(f"g{name}")
        with scratch_database("sqlite") as url:
            growth.seed(url, tag, n, self.mode.rows_each)
            with self.subject_run(subject, name, url, tag, partitions=o.partitions, batch=o.batch) as run:
                return growth.measure(subject, run, tag, n, o.rate)

    # ------------------------------------------------------------------------------ scale-out
    def scaleout(self) -> None:
        """Each repeat: 1 worker and 2 workers on a backlog of their own, in alternating order."""
        o, m = self.scaleout_options, self.mode
        for r in range(m.repeats):
            log(f"== scale-out: repeat {r + 1}/{m.repeats}, backlog of {o.n:,}, workers {o.workers}")
            for k in rotate(list(o.workers), r):
                self.attempt("scaleout", f"workers:{k}", r, functools.partial(self._scaleout, k))

    def _scaleout(self, workers: int) -> dict[str, Any]:
        o, tag = self.scaleout_options, unique(f"s{workers}")
        subject = scaleout.subject(workers)
        with scratch_database("sqlite") as url:
            growth.seed(url, tag, o.n, self.mode.rows_each)
            with self.subject_run(subject, "worker", url, tag, partitions=o.partitions, batch=o.batch) as run:
                # the worker's defaults are what is under test: no --handoff-concurrency here
                return scaleout.measure(subject, replace(run, settings=()), tag, o.n)

    # ------------------------------------------------------------------------------ deletion
    def deletion(self) -> None:
        m = self.mode
        for r in range(m.repeats):
            for kind in self.databases():
                log(f"== deletion {kind}: repeat {r + 1}/{m.repeats}")
                with scratch_database(kind, self.postgres) as url:
                    for batch in m.batches:
                        rows = max(batch * m.batches_per_run, m.del_rows)
                        subjects = ["raw", "workflow"] + (["workflow_per_batch"] if batch == 1000 else [])
                        for subject in rotate(subjects, r):
                            key = f"{kind}:{batch}:{subject}"
                            fn = lambda s=subject, b=batch, n=rows: self._delete(url, s, b, n)  # noqa: E731
                            self.attempt("deletion", key, r, fn)

    def _delete(self, url: str, subject: str, batch: int, rows: int) -> dict[str, Any]:
        record_id = unique("del")
        db = engine(url)
        seed(db, {record_id: rows}, vacuum=True)
        db.dispose()
        if subject == "raw":
            return deletion.raw_delete(url, record_id, rows, batch)
        per_batch = {"WORKFLOW_STEP_SECONDS": "0"} if subject == "workflow_per_batch" else {}
        with self.resonate(record_id) as server:
            run = replace(
                self.run_of(url, record_id, partitions=1, batch=batch, server=server),
                settings=tuple({**self.settings, **per_batch}.items()),
            )
            try:
                return deletion.workflow_delete(run, record_id, rows, record_id)
            finally:
                run.topics.delete(self.bootstrap)


def dump(results: dict[str, Any]) -> str:
    """results.json: one line per measurement (and per other top-level key)."""

    def js(v: Any) -> str:
        return json.dumps(v, default=str)

    top = [f" {js(k)}: {js(v)}" for k, v in results.items() if k != "runs"]
    sections = []
    for section, keys in results.get("runs", {}).items():
        entries = [
            f"   {js(k)}: [\n" + ",\n".join(f"    {js(v)}" for v in vs) + "\n   ]" for k, vs in keys.items()
        ]
        sections.append(f"  {js(section)}: {{\n" + ",\n".join(entries) + "\n  }")
    top.append(' "runs": {\n' + ",\n".join(sections) + "\n }")
    return "{\n" + ",\n".join(top) + "\n}"


def rotate[T](items: list[T], k: int) -> list[T]:
    k %= max(1, len(items))
    return items[k:] + items[:k]


def _brief(v: dict[str, Any]) -> str:
    keys = ("handoff_rate", "durable_rate", "e2e_rate", "rate", "fifth_ratio", "min_share", "max_share")
    brief = " ".join(f"{k}={v[k]:,.{1 if k.endswith('rate') else 3}f}" for k in keys if k in v)
    return brief + (f" rss={v['rss_kb'] / 1024:,.0f}MiB" if "rss_kb" in v else "")


def facts(postgres: str | None) -> dict[str, Any]:
    """The machine and the versions the figures depend on."""
    import sqlite3
    from importlib.metadata import version

    import confluent_kafka

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    out: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "resonate_sdk": version("resonate-sdk"),
        "confluent_kafka": version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "sqlalchemy": version("SQLAlchemy"),
        "sqlite": sqlite3.sqlite_version,
        "resonate_server": Path(os.environ.get("SERVICES_RESONATE_BIN", "?")).name,
        "kafka": os.environ.get("BENCH_KAFKA_VERSION", "?"),  # scripts/bench.sh exports it
        "load_before": os.getloadavg(),
    }
    if handoff.DBOS_PYTHON.exists():
        probe = "from importlib.metadata import version; print(version('dbos'))"
        dbos = subprocess.run([handoff.DBOS_PYTHON, "-c", probe], capture_output=True, text=True, check=False)
        out["dbos"] = dbos.stdout.strip() or "?"
    if postgres:
        with contextlib.suppress(Exception):
            db = engine(postgres)
            with db.connect() as conn:
                out["postgres"] = str(conn.exec_driver_sql("SHOW server_version").scalar_one())
            db.dispose()
    return out


def git_rev() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--", "src")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes in src/" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: checks the harness")
    p.add_argument("--full", action="store_true", help="5 repeats, bigger records")
    p.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections of {','.join(SECTIONS)}"
    )
    p.add_argument(
        "--subjects",
        help=f"comma-separated hand-off subjects of {','.join((*SUBJECTS, CREATE))} (default: all of "
        "the mode's; e.g. worker,naive for a quick A/B)",
    )
    p.add_argument("--repeats", type=int, help="override the mode's repeats")
    p.add_argument("-n", type=int, help="override the records per hand-off run")
    p.add_argument("--handoff-concurrency", type=int, help="WORKER_HANDOFF_CONCURRENCY of the workers")
    p.add_argument(
        "--growth-sizes",
        help="comma-separated records per growth run (default: smoke 300,1000; quick 1000,10000; "
        "full 1000,10000,100000)",
    )
    p.add_argument(
        "--growth-rate",
        type=float,
        default=growth.RATE,
        help="msg/s of the growth section's paced producer (default %(default)s: above the subjects' "
        "capacity, so a backlog builds)",
    )
    p.add_argument(
        "--growth-dbos-max",
        type=int,
        default=growth.DBOS_MAX,
        help="largest growth size the DBOS subject runs at (default %(default)s)",
    )
    p.add_argument(
        "--scaleout-n",
        type=int,
        help="records of the scale-out section's backlog (default: smoke 300, quick and full 1000)",
    )
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results.json"), help="raw figures (JSON)")
    p.add_argument(
        "--report",
        default=str(ROOT / "BENCHMARKS.md"),
        help="Markdown file whose generated block to fill (another path leaves BENCHMARKS.md as it is)",
    )
    p.add_argument("--workdir", help="process logs and server stores (default: a new temp dir)")
    p.add_argument("--command", help="the command line to print in the report")
    args = p.parse_args(argv)
    mode = MODES["smoke" if args.smoke else "full" if args.full else "quick"]
    mode.repeats = args.repeats or mode.repeats
    mode.n = args.n or mode.n
    if args.growth_sizes:
        try:
            mode.growth_sizes = tuple(int(x) for x in args.growth_sizes.split(",") if x.strip())
        except ValueError:
            p.error(f"--growth-sizes: comma-separated integers, not {args.growth_sizes!r}")
    mode.scaleout_n = args.scaleout_n or mode.scaleout_n
    if mode.scaleout_n < 1:
        p.error("--scaleout-n: at least 1 record")
    if any(x < 5 for x in mode.growth_sizes) or args.growth_rate <= 0:
        p.error("growth sizes of at least 5 records (five fifths) and a positive --growth-rate")
    options = growth.Options(mode.growth_sizes, args.growth_rate, args.growth_dbos_max)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    if set(sections) - set(SECTIONS):
        p.error(f"unknown section(s) {sorted(set(sections) - set(SECTIONS))}; choose from {SECTIONS}")
    subjects = frozenset((*SUBJECTS, CREATE))
    if args.subjects:
        subjects = frozenset(s.strip() for s in args.subjects.split(",") if s.strip())
        if unknown := subjects - {*SUBJECTS, CREATE}:
            p.error(f"unknown subject(s) {sorted(unknown)}; choose from {(*SUBJECTS, CREATE)}")
    settings = (
        {"WORKER_HANDOFF_CONCURRENCY": str(args.handoff_concurrency)} if args.handoff_concurrency else {}
    )
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rd-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    suite = Suite(
        mode, Path(args.results), workdir, settings, subjects, options, scaleout.Options(mode.scaleout_n)
    )
    started = time.time()
    suite.results |= {
        "mode": asdict(mode),
        "sections": sections,
        "subjects": sorted(subjects),
        "command": args.command
        or " ".join(["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "git": git_rev(),
        "settings": settings,
        **({"growth": asdict(options)} if "growth" in sections else {}),
        **({"scaleout": asdict(suite.scaleout_options)} if "scaleout" in sections else {}),
        "facts": facts(suite.postgres),
        "workdir": str(workdir),
    }
    log(f"mode {mode.name}, sections {sections}, logs in {workdir}")
    for section in sections:
        getattr(suite, section)()
    suite.results["minutes"] = (time.time() - started) / 60
    suite.results["load_after"] = os.getloadavg()
    suite.save()
    from benchmarks.report import write

    write(suite.results, Path(args.report))
    log(f"done in {suite.results['minutes']:.1f} min: {args.report}, {args.results}")
    return 1 if suite.results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
