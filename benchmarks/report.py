"""Render BENCHMARKS.md from benchmarks/results.json: `python -m benchmarks.report [results.json [out.md]]`.

Every number in the report comes from the results file written by `python -m benchmarks.run`;
the prose around them states mechanisms (how the SDK and the worker are built) and fills in the
numbers of the run.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import median

NA = "\u2013"  # en dash
X = "\u00d7"  # multiplication sign
DIV = "\u00f7"  # division sign


# --------------------------------------------------------------------------------- formatting
def _bad(x: float | None) -> bool:
    return x is None or math.isnan(x)


def _f(x: float | None, digits: int = 0) -> str:
    return NA if x is None or _bad(x) else f"{x:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or _bad(a) or _bad(b) or b == 0:
        return None
    return a / b


def _r(x: float | None, digits: int = 2) -> str:
    return NA if x is None or _bad(x) else f"{x:.{digits}f}{X}"


def _pct(x: float | None) -> str:
    return NA if x is None or _bad(x) else f"{x * 100:.0f}%"


def _held(x: float | None, ok: bool) -> str:
    return "not measured" if x is None or _bad(x) else ("**held**" if ok else "**not held**")


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def header(*cells: str) -> str:
    return row(*cells) + "\n" + row(*(["---"] * len(cells)))


def _peak(rss: int | list[int]) -> int:
    return max(rss) if isinstance(rss, list) else int(rss)


def _dig(d: dict[str, Any], key: str) -> float | None:
    cur: Any = d
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return float(cur) if isinstance(cur, int | float) else None


class Runs:
    """Accessors over results["runs"][section][subject] = [one dict per repeat]."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.runs: dict[str, dict[str, list[dict[str, Any]]]] = results.get("runs", {})

    def get(self, section: str, subject: str) -> list[dict[str, Any]]:
        return self.runs.get(section, {}).get(subject, [])

    def vals(self, section: str, subject: str, key: str) -> list[float]:
        return [v for v in (_dig(x, key) for x in self.get(section, subject)) if v is not None]

    def med(self, section: str, subject: str, key: str) -> float | None:
        vals = self.vals(section, subject, key)
        return median(vals) if vals else None

    def spread(self, section: str, subject: str, key: str, digits: int = 0) -> str:
        vals = self.vals(section, subject, key)
        if not vals:
            return NA
        if len(vals) == 1:
            return f"{_f(vals[0], digits)} (n=1)"
        lo, hi = _f(min(vals), digits), _f(max(vals), digits)
        return f"{_f(median(vals), digits)} ({lo}{NA}{hi}, n={len(vals)})"

    def rss(self, section: str, subject: str) -> str:
        vals = [_peak(v["rss_kb"]) for v in self.get(section, subject) if v.get("rss_kb")]
        return f"{max(vals) / 1024:,.0f}" if vals else NA

    def ratio(self, section: str, num: str, den: str, key: str, key_den: str | None = None) -> float | None:
        """Median over repeats of the per-repeat ratio (repeat i of num / repeat i of den)."""
        a = [_dig(v, key) for v in self.get(section, num)]
        b = [_dig(v, key_den or key) for v in self.get(section, den)]
        pairs = [x / y for x, y in zip(a, b, strict=False) if x is not None and y]
        return median(pairs) if pairs else None


def _slice_rates(quantiles: Sequence[float], n: int) -> tuple[float | None, float | None]:
    """Hand-off rate over the first and the last 20% of one run's messages (from the times at
    which 0%, 5%, ... 100% of them were handed off)."""
    if len(quantiles) != 21 or n <= 0:
        return None, None
    q0, q20, q80, q100 = quantiles[0], quantiles[4], quantiles[16], quantiles[20]
    return (0.2 * n / (q20 - q0) if q20 > q0 else None, 0.2 * n / (q100 - q80) if q100 > q80 else None)


def _first_last(runs: list[dict[str, Any]]) -> str:
    pairs = [_slice_rates(v.get("handoff_quantiles", []), v.get("n", 0)) for v in runs]
    firsts = [a for a, _ in pairs if a]
    lasts = [b for _, b in pairs if b]
    return f"{_f(median(firsts))} \u2192 {_f(median(lasts))}" if firsts and lasts else NA


def _sig(x: float | None) -> str:
    """Two significant digits, for projections."""
    if x is None or _bad(x) or x <= 0:
        return NA
    digits = max(0, 1 - math.floor(math.log10(x)))
    return f"{round(x, -math.floor(math.log10(x)) + 1):,.{digits if x < 10 else 0}f}"


def _load(x: Any) -> str:
    return " ".join(f"{v:.2f}" for v in x) if x else "?"


# ------------------------------------------------------------------------------------ render
def render(results: dict[str, Any]) -> str:
    parts = [
        _intro(results),
        _machine(results),
        _targets(results),
        _handoff(results),
        _e2e(results),
        _hol(results),
        _deletion(results),
        _growth(results),
        _profile(results),
        _findings(results),
        _how(results),
    ]
    return "\n".join(p for p in parts if p).rstrip() + "\n"


def _intro(results: dict[str, Any]) -> str:
    mode = results.get("mode", {})
    conc = results.get("handoff_concurrency", {})
    minutes = (results.get("seconds") or 0) / 60
    lines = [
        "# Benchmarks\n",
        f"Measured {results.get('started', '?')} by **`{results.get('command', '?')}`** "
        f"({mode.get('name', '?')} mode, {minutes:.1f} min for the suite), tree `{results.get('git', '?')}`. "
        "Every figure is the **median over repeated runs** (min\u2013max and the number of runs in "
        "brackets); each baseline was measured **in the same run and the same repeat** as its "
        "subject (the order of subjects rotates from one repeat to the next), and the comparison "
        "is **the median of the per-repeat ratios**. Raw numbers: `benchmarks/results.json`; "
        "re-render with `python -m benchmarks.report`. Method and subjects: `benchmarks/README.md`.\n",
    ]
    if conc.get("supported"):
        used = conc.get("used")
        value = used if used is not None else f"{conc.get('default')} (the default)"
        lines.append(f"Worker hand-off concurrency: `WORKER_HANDOFF_CONCURRENCY` = {value}.\n")
    else:
        lines.append(
            "Worker hand-off concurrency: this tree has no `WORKER_HANDOFF_CONCURRENCY` setting; the "
            "worker measured here hands off one message at a time per process.\n"
        )
    return "\n".join(lines)


def _machine(results: dict[str, Any]) -> str:
    f = results.get("facts", {})
    rows = [
        ("cores (nproc)", f.get("nproc")),
        ("CPU", f.get("cpu")),
        ("RAM", f"{f.get('ram_gib')} GiB"),
        ("kernel", f.get("kernel")),
        ("Python", f.get("python")),
        ("Kafka broker", f"Apache Kafka {f.get('kafka')} (KRaft, single node, on this machine)"),
        ("Resonate server", f"{f.get('resonate_server')} ({f.get('resonate_store')} store, on this machine)"),
        ("PostgreSQL", f"{f.get('postgres')} (on this machine; fsync off, as scripts/services.sh runs it)"),
        ("SQLite", f.get("sqlite")),
        ("resonate-sdk", f.get("resonate_sdk")),
        ("confluent-kafka / librdkafka", f"{f.get('confluent_kafka')} / {f.get('librdkafka')}"),
        ("SQLAlchemy / psycopg", f"{f.get('sqlalchemy')} / {f.get('psycopg')}"),
        ("py-spy (benchmark only)", f.get("py_spy")),
        (
            "load average before \u2192 after",
            f"{_load(f.get('load_before'))} \u2192 {_load(results.get('load_after'))}",
        ),
    ]
    body = "\n".join(row(k, v) for k, v in rows)
    return (
        "## Machine\n\n"
        + header("fact", "value")
        + "\n"
        + body
        + "\n\nThe services run on the same cores as the worker and the harness, and other engineers' "
        "test suites share the machine: absolute numbers move by tens of percent between runs; the "
        "same-repeat ratios are what to compare across machines.\n"
    )


def _targets(results: dict[str, Any]) -> str:
    runs = Runs(results)
    threads = results.get("mode", {}).get("threads", 4)
    lines = ["## Targets\n", header("target", "measured (median of per-repeat ratios)", "")]
    r1 = runs.ratio("handoff", "worker1", "promise_create_threads", "handoff_rate", "rate")
    r2 = runs.ratio("handoff", "worker2", "promise_create_threads", "handoff_rate", "rate")
    rs = runs.ratio("handoff", "worker1", "promise_create_seq", "handoff_rate", "rate")
    lines.append(
        row(
            f"hand-off \u2265 50% of the server's raw promise-create rate ({threads} client threads)",
            f"1 worker {_pct(r1)}, 2 workers {_pct(r2)} (of a sequential client loop: {_pct(rs)})",
            _held(r1, (r1 or 0) >= 0.5),
        )
    )
    f1 = runs.ratio("handoff", "worker1", "reference", "handoff_rate")
    f2 = runs.ratio("handoff", "worker2", "reference", "handoff_rate")
    lines.append(
        row(
            "hand-off \u2265 3\u00d7 the reference example's sequential pattern",
            f"1 worker {_r(f1)}, 2 workers {_r(f2)}",
            _held(f1, (f1 or 0) >= 3),
        )
    )
    for kind in ("sqlite", "postgres"):
        rr = runs.ratio("deletion", f"{kind}_1000_workflow", f"{kind}_1000_sql", "rate")
        if rr is not None:
            lines.append(
                row(
                    "deletion through the workflow \u2265 80% of raw batched DELETE, "
                    f"batch 1,000, pause 0 ({kind})",
                    _pct(rr),
                    _held(rr, rr >= 0.8),
                )
            )
    for kind in ("sqlite", "postgres"):
        behind = runs.med("hol", f"worker_behind_{kind}", "latency.p99")
        solo = runs.med("hol", f"worker_solo_{kind}", "latency.p99")
        if behind is not None:
            rr = runs.ratio("hol", f"worker_behind_{kind}", f"worker_solo_{kind}", "latency.p99")
            lines.append(
                row(
                    f"small records' p99 behind a huge one \u2264 2\u00d7 their solo p99 ({kind})",
                    f"{_r(rr)} ({_f(behind, 2)} s vs. {_f(solo, 2)} s)",
                    _held(rr, (rr or 99) <= 2),
                )
            )
    return "\n".join(lines) + "\n"


def _handoff(results: dict[str, Any]) -> str:
    runs = Runs(results)
    mode = results.get("mode", {})
    n, threads = mode.get("n", 0), mode.get("threads", 4)
    create_n = runs.med("handoff", "promise_create_threads", "rate")
    create_1 = runs.med("handoff", "promise_create_seq", "rate")
    lines = [
        f"## 1. Hand-off rate ({n:,} messages, real Kafka + Resonate server)\n",
        "Messages per second from `records_to_be_deleted` to a durably created workflow: from the "
        "start of producing the messages (workers already in the group, 4 partitions) to the last "
        "`handed_off` event in the workers' logs (millisecond timestamps; the offset is stored only "
        "after it). The workflows run in the same processes meanwhile, as in production; "
        "`WORKER_MAX_IN_FLIGHT=0` so backpressure does not cut in. Records have "
        f"{mode.get('rows_each')} rows (one batch). The 1-worker figure is the hand-off phase of the "
        "SQLite end-to-end run (section 2). Baselines, same repeat: a plain "
        "`confluent_kafka.Consumer` reading the same topic (broker limit); "
        "`RemoteStore.promises.create` in a client loop over keep-alive connections (one per thread, "
        "as the worker's store adapter does; the SDK's own store opens one per request), sequential "
        f"and with {threads} threads (durable-side limit); the reference example's loop in one "
        "process (the SDK as it ships).\n",
        header(
            "subject",
            "messages/s",
            f"{DIV} raw create {threads} threads",
            f"{DIV} raw create seq.",
            f"{DIV} reference",
            "peak RSS (MiB)",
        ),
    ]
    lines.append(
        row(
            "raw consume (plain Consumer)",
            runs.spread("handoff", "raw_consume", "rate"),
            _r(_ratio(runs.med("handoff", "raw_consume", "rate"), create_n)),
            "",
            "",
            NA,
        )
    )
    lines.append(
        row(
            "raw promise create, sequential",
            runs.spread("handoff", "promise_create_seq", "rate"),
            _r(_ratio(create_1, create_n)),
            f"1.00{X}",
            "",
            runs.rss("handoff", "promise_create_seq"),
        )
    )
    lines.append(
        row(
            f"raw promise create, {threads} threads",
            runs.spread("handoff", "promise_create_threads", "rate"),
            f"1.00{X}",
            _r(_ratio(create_n, create_1)),
            "",
            runs.rss("handoff", "promise_create_threads"),
        )
    )
    for subj, label in (
        ("reference", "reference pattern (sequential `begin_run`, 1 process)"),
        ("worker1", "**record-deleter, 1 worker**"),
        ("worker2", "**record-deleter, 2 workers**"),
    ):
        lines.append(
            row(
                label,
                runs.spread("handoff", subj, "handoff_rate"),
                _r(runs.ratio("handoff", subj, "promise_create_threads", "handoff_rate", "rate")),
                _r(runs.ratio("handoff", subj, "promise_create_seq", "handoff_rate", "rate")),
                _r(runs.ratio("handoff", subj, "reference", "handoff_rate")),
                runs.rss("handoff", subj),
            )
        )
    p50 = runs.med("handoff", "promise_create_seq", "p50_ms")
    p99 = runs.med("handoff", "promise_create_seq", "p99_ms")
    lines.append(f"\nRaw create latency, sequential client: p50 {_f(p50, 1)} ms, p99 {_f(p99, 1)} ms.\n")
    return "\n".join(lines)


def _e2e(results: dict[str, Any]) -> str:
    runs = Runs(results)
    n = results.get("mode", {}).get("n", 0)
    lines = [
        f"## 2. End-to-end throughput ({n:,} records, one batch each, pause 0)\n",
        "Records per second from the start of producing the requests to the last completion on "
        "`records_that_were_deleted` (its Kafka timestamp). *Until all durable*: N \u00f7 the time "
        "until no promise of the run is pending on the server any more (a completion is published "
        "before the workflow's last durable steps: resolve the step, the root, complete the task), "
        "the rate a worker can sustain. Baseline in the same repeat: the naive "
        "sequential consumer \u2014 poll, `SqlRecordStore.delete_batch` until nothing is left, the "
        "same confirmed completion publish, next message; no workflow.\n",
        header(
            "database",
            "subject",
            "records/s",
            f"{DIV} naive",
            "latency p50 / p99 (s)",
            "records/s until all durable",
            "peak RSS (MiB)",
        ),
    ]
    for kind in ("sqlite", "postgres"):
        if not runs.get("e2e", f"naive_{kind}") and not runs.get("e2e", f"worker1_{kind}"):
            continue
        lines.append(
            row(
                kind,
                "naive sequential consumer",
                runs.spread("e2e", f"naive_{kind}", "e2e_rate"),
                f"1.00{X}",
                "",
                "",
                runs.rss("e2e", f"naive_{kind}"),
            )
        )
        for k in (1, 2):
            subj = f"worker{k}_{kind}"
            if runs.get("e2e", subj):
                p50, p99 = runs.med("e2e", subj, "latency.p50"), runs.med("e2e", subj, "latency.p99")
                lat = f"{_f(p50, 2)} / {_f(p99, 2)}"
                lines.append(
                    row(
                        kind,
                        f"record-deleter, {k} worker{'s' if k > 1 else ''}",
                        runs.spread("e2e", subj, "e2e_rate", 1),
                        _r(runs.ratio("e2e", subj, f"naive_{kind}", "e2e_rate")),
                        lat,
                        _f(_durable_rate(runs.get("e2e", subj)), 1),
                        runs.rss("e2e", subj),
                    )
                )
    return "\n".join(lines) + "\n"


def _durable_rate(vals: list[dict[str, Any]]) -> float | None:
    rates = [v["n"] / v["durable_seconds"] for v in vals if v.get("durable_seconds") and v.get("n")]
    return median(rates) if rates else None


def _hol(results: dict[str, Any]) -> str:
    runs = Runs(results)
    mode = results.get("mode", {})
    lines = [
        "## 3. Head-of-line latency\n",
        f"One record of **{mode.get('hol_big', 0):,} rows** is produced first, then "
        f"{mode.get('hol_small')} small records ({mode.get('hol_small_rows')} rows each), all on one "
        "partition; batch 1,000, pause 0. A small record's time to completion = its completion's "
        "Kafka timestamp \u2212 the start of producing. *Solo*: the same small records, no big one. "
        "*Naive*: the sequential consumer on the same workload; it must finish the big record "
        "before it reaches the small ones. (The big record's workflow is not waited for.)\n",
        header(
            "database",
            "subject",
            "small p50 (s)",
            "small p99 (s)",
            f"p99 {DIV} worker solo p99",
            "peak RSS (MiB)",
        ),
    ]
    notes = []
    for kind in ("sqlite", "postgres"):
        solo = f"worker_solo_{kind}"
        for subj, label in (
            (solo, "record-deleter, small records alone"),
            (f"worker_behind_{kind}", "record-deleter, behind the big record"),
            (f"naive_behind_{kind}", "naive sequential consumer, behind the big record"),
        ):
            if runs.get("hol", subj):
                lines.append(
                    row(
                        kind,
                        label,
                        runs.spread("hol", subj, "latency.p50", 2),
                        runs.spread("hol", subj, "latency.p99", 2),
                        _r(runs.ratio("hol", subj, solo, "latency.p99")),
                        runs.rss("hol", subj),
                    )
                )
        naive_first = runs.med("hol", f"naive_behind_{kind}", "latency_min")
        w99 = runs.med("hol", f"worker_behind_{kind}", "latency.p99")
        n99 = runs.med("hol", f"naive_behind_{kind}", "latency.p99")
        if naive_first and w99 and n99:
            big = mode.get("hol_big", 0)
            per_s = big / naive_first if naive_first else None
            crossover = w99 - (n99 - naive_first)
            notes.append(
                f"{kind}: the naive consumer reached its first small record after {_f(naive_first, 2)} s "
                f"(the big record's full time, ~{_f(per_s)} rows/s); its small p99 is that plus "
                f"{_f(n99 - naive_first, 2)} s for the small ones. The workflow's small p99 "
                f"({_f(w99, 2)} s) depends on the big record only through the capacity they share, "
                "not on its length, so the naive consumer falls behind "
                f"once the big record takes more than ~{_f(crossover, 1)} s, i.e. beyond "
                f"~{_sig(crossover * per_s if per_s else None)} rows at this rate."
            )
    if notes:
        lines.append("\n" + "\n".join(f"- {x}" for x in notes))
    return "\n".join(lines) + "\n"


def _deletion(results: dict[str, Any]) -> str:
    runs = Runs(results)
    mode = results.get("mode", {})
    lines = [
        "## 4. Deletion efficiency (rows/s, one record, pause 0)\n",
        f"One record of max(batch {X} {mode.get('del_batches_per_run')}, "
        f"{mode.get('del_rows', 0):,}) rows, deleted by (a) the bare "
        "statement `DELETE FROM record_rows WHERE id IN (SELECT id \u2026 WHERE record_id = :k LIMIT :n)` "
        "in a loop, one transaction per batch (the limit); (b) `SqlRecordStore.delete_batch` in a "
        "plain loop (the workflow's store: + a `rows left?` probe when a batch comes up short and an "
        "audit row per batch); (c) the durable workflow on the real Resonate server "
        "(`ResonateRuntime.start` \u2192 result, including its fixed costs: start, completion publish), "
        "with the default step budget `WORKFLOW_STEP_SECONDS`=0.5 (a step deletes batches, each its "
        "own transaction, for up to 0.5 s, then checkpoints); (d) at batch 1,000 only, the workflow "
        "with `WORKFLOW_STEP_SECONDS=0`, a checkpoint after every batch. Same database, same repeat.\n",
        header(
            "database",
            "batch",
            "rows",
            "raw DELETE loop",
            "SqlRecordStore loop",
            "workflow",
            f"workflow {DIV} raw",
            f"workflow {DIV} store loop",
            f"store {DIV} raw",
            "workflow ms/batch",
            f"checkpoint per batch {DIV} raw",
        ),
    ]
    for kind in ("sqlite", "postgres"):
        for batch in mode.get("del_batches", ()):
            b = f"{kind}_{batch}"
            if not runs.get("deletion", f"{b}_workflow"):
                continue
            secs = runs.med("deletion", f"{b}_workflow", "seconds")
            batches = runs.med("deletion", f"{b}_workflow", "batches")
            lines.append(
                row(
                    kind,
                    f"{batch:,}",
                    f"{int(runs.med('deletion', f'{b}_sql', 'record_rows') or 0):,}",
                    runs.spread("deletion", f"{b}_sql", "rate"),
                    runs.spread("deletion", f"{b}_store", "rate"),
                    runs.spread("deletion", f"{b}_workflow", "rate"),
                    _pct(runs.ratio("deletion", f"{b}_workflow", f"{b}_sql", "rate")),
                    _pct(runs.ratio("deletion", f"{b}_workflow", f"{b}_store", "rate")),
                    _pct(runs.ratio("deletion", f"{b}_store", f"{b}_sql", "rate")),
                    _f(secs / batches * 1000 if secs and batches else None, 2),
                    _pct(runs.ratio("deletion", f"{b}_workflow_per_batch", f"{b}_sql", "rate"))
                    if runs.get("deletion", f"{b}_workflow_per_batch")
                    else "",
                )
            )
    return "\n".join(lines) + "\n"


def _growth(results: dict[str, Any]) -> str:
    runs = Runs(results)
    mode = results.get("mode", {})
    n = mode.get("n", 0)
    lines = [
        "## 5. Growth\n",
        *(
            [
                "Quick mode grows to 10,000 messages; `--full` goes to 100,000 (the last full growth "
                "run, `scripts/bench.sh --full --only growth --report BENCHMARKS-growth.md --results "
                "benchmarks/results-growth.json`, is in [BENCHMARKS-growth.md](BENCHMARKS-growth.md)).\n"
            ]
            if mode.get("name") != "full"
            else []
        ),
        "### Hand-off vs. number of messages (1 worker, hand-off only above section 1's size)\n",
        header(
            "messages",
            "record-deleter msg/s",
            "raw create msg/s",
            f"{DIV} raw create",
            "reference msg/s",
            f"{DIV} reference",
            "first 20% \u2192 last 20% (msg/s)",
            "peak RSS (MiB)",
        ),
        row(
            f"{n:,}",
            runs.spread("handoff", "worker1", "handoff_rate"),
            runs.spread("handoff", "promise_create_threads", "rate"),
            _pct(runs.ratio("handoff", "worker1", "promise_create_threads", "handoff_rate", "rate")),
            runs.spread("handoff", "reference", "handoff_rate"),
            _r(runs.ratio("handoff", "worker1", "reference", "handoff_rate")),
            _first_last(runs.get("handoff", "worker1")),
            runs.rss("handoff", "worker1"),
        ),
    ]
    for size, _reps in mode.get("growth", []):
        ws, cs, rs = f"worker1_{size}", f"promise_create_threads_{size}", f"reference_{size}"
        if runs.get("growth", ws):
            lines.append(
                row(
                    f"{size:,}",
                    runs.spread("growth", ws, "handoff_rate"),
                    runs.spread("growth", cs, "rate"),
                    _pct(runs.ratio("growth", ws, cs, "handoff_rate", "rate")),
                    runs.spread("growth", rs, "handoff_rate"),
                    _r(runs.ratio("growth", ws, rs, "handoff_rate")),
                    _first_last(runs.get("growth", ws)),
                    runs.rss("growth", ws),
                )
            )
    raw_c = [runs.med("growth", f"worker1_{s}", "raw_consume_rate") for s, _ in mode.get("growth", [])]
    if any(raw_c):
        lines.append(f"\nRaw consume rate of those topics: {', '.join(_f(x) for x in raw_c)} msg/s.")
    lines += [
        "\n### End-to-end vs. rows per record (SQLite, 1 worker, batch 1,000)\n",
        header(
            "rows/record",
            "batches/record",
            "records",
            "record-deleter records/s",
            "rows/s",
            "naive records/s",
            f"{DIV} naive",
            "peak RSS (MiB)",
        ),
    ]
    for rows in mode.get("rows_growth", ()):
        w, nv = f"worker_{rows}", f"naive_{rows}"
        if runs.get("rows_growth", w):
            rate = runs.med("rows_growth", w, "e2e_rate")
            lines.append(
                row(
                    f"{rows:,}",
                    -(-(rows + 1) // 1000),
                    mode.get("rows_growth_records"),
                    runs.spread("rows_growth", w, "e2e_rate", 1),
                    _f((rate or 0) * rows),
                    runs.spread("rows_growth", nv, "e2e_rate", 1),
                    _r(runs.ratio("rows_growth", w, nv, "e2e_rate")),
                    runs.rss("rows_growth", w),
                )
            )
    sg = (results.get("store_growth") or {}).get("points") or []
    if sg:
        lines.append(
            "\n**The server's store** (a fresh Resonate server, filled with completed promises between "
            "probes; each probe: 500 sequential creates): "
            + ", ".join(
                f"{p['completed_promises']:,} \u2192 {_f(p['rate'])}/s (p50 {_f(p['p50_ms'], 2)} ms)"
                for p in sg
            )
            + ".\n"
        )
    lines.append(_growth_text(results))
    return "\n".join(lines) + "\n"


def _growth_text(results: dict[str, Any]) -> str:
    runs = Runs(results)
    mode = results.get("mode", {})
    n = mode.get("n", 0)
    lines = ["### Where the cost per record grows, and why\n"]
    pts = [
        (
            n,
            runs.med("handoff", "worker1", "handoff_rate"),
            runs.med("handoff", "promise_create_threads", "rate"),
        )
    ]
    pts += [
        (
            s,
            runs.med("growth", f"worker1_{s}", "handoff_rate"),
            runs.med("growth", f"promise_create_threads_{s}", "rate"),
        )
        for s, _ in mode.get("growth", [])
    ]
    pts = [p for p in pts if p[1]]
    if len(pts) >= 2:
        lines.append(
            "- **Hand-off vs. messages**: "
            + ", ".join(f"{s:,} messages \u2192 {r:,.0f} msg/s ({1000 / r:.2f} ms each)" for s, r, _ in pts)
            + ". Every handed-off workflow runs in the same process while the hand-off goes on, and "
            "the number of workflows in flight grows with N when the hand-off outruns their "
            "completion (it does: section 2): their round trips compete with `begin_run` for the "
            "server, the GIL and the 2 cores, so the per-message cost grows along the run (first vs. "
            "last 20% above) until, with `WORKER_MAX_IN_FLIGHT` bounded, polling pauses and the "
            "hand-off settles at the end-to-end rate."
        )
    rows = [(r, runs.med("rows_growth", f"worker_{r}", "e2e_rate")) for r in mode.get("rows_growth", ())]
    rows = [x for x in rows if x[1]]
    if rows:
        lines.append(
            "- **Rows per record**: "
            + ", ".join(f"{r:,} rows \u2192 {w:,.1f} records/s" for r, w in rows)
            + ". A record's cost is mostly the fixed set of durable round trips, not its rows: with "
            "pause 0 one delete step deletes batch after batch for up to `WORKFLOW_STEP_SECONDS` "
            "before it checkpoints, so extra batches add SQL time and no round trips until a step "
            "runs out of budget (with a checkpoint per batch, each batch would add a step promise "
            "created and resolved: 2 round trips on the single bridge thread). The naive consumer "
            "pays only the SQL."
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- profile
_ROLES = {
    "MainThread": "Kafka poll, offsets, hand-off dispatch",
    "handoff": "hand-off pool: `begin_run` = `POST /promises/task`",
    "bridge": "SDK: every durable-promise call of every workflow, one at a time",
    "processor": "SDK: step functions (SQL batch, Kafka publish)",
    "heartbeat": "SDK: task heartbeats",
    "message-source": "SDK: dispatch of server messages",
    "message-source::poller": "SDK: long-poll to the server",
    "delay-q": "SDK: retry/sleep timers",
    "metrics endpoint": "Prometheus endpoint",
}

_CPU_SUBJECTS = (
    ("e2e", "worker1_sqlite", "record-deleter, 1 worker, SQLite (end to end)"),
    ("e2e", "worker1_postgres", "record-deleter, 1 worker, PostgreSQL (end to end)"),
    ("e2e", "worker2_sqlite", "record-deleter, 2 workers, SQLite (end to end)"),
    ("e2e", "naive_sqlite", "naive sequential consumer, SQLite"),
    ("e2e", "naive_postgres", "naive sequential consumer, PostgreSQL"),
    ("handoff", "worker2", "record-deleter, 2 workers (hand-off phase only)"),
    ("handoff", "reference", "reference pattern (hand-off phase only)"),
)


def _cpu_table(results: dict[str, Any]) -> str:
    runs = Runs(results)
    nproc = (results.get("facts") or {}).get("nproc") or 2
    out = []
    for section, subj, label in _CPU_SUBJECTS:
        vals = [v for v in runs.get(section, subj) if v.get("cpu_seconds") and v.get("n")]
        if not vals:
            continue

        def per_k(prefixes: tuple[str, ...], vals: list[dict[str, Any]] = vals) -> float | None:
            xs = []
            for v in vals:
                c = v["cpu_seconds"]
                x = sum(c[k] for k in c if k.startswith(prefixes))
                if not _bad(x):
                    xs.append(x / v["n"] * 1000)
            return median(xs) if xs else None

        busy = [
            sum(x for k, x in v["cpu_seconds"].items() if k != "wall" and not _bad(x))
            / (v["cpu_seconds"]["wall"] * nproc)
            for v in vals
            if v["cpu_seconds"].get("wall")
        ]
        out.append(
            row(
                label,
                _f(per_k(("worker", "naive", "reference")), 2),
                _f(per_k(("resonate",)), 2),
                _f(per_k(("kafka",)), 2),
                _f(per_k(("postgres",)), 2),
                _f(per_k(("harness",)), 2),
                _pct(median(busy) if busy else None),
            )
        )
    if not out:
        return ""
    return (
        "**CPU seconds per 1,000 records, by process** (from /proc over each measured window, "
        "median of the runs; services only when `scripts/bench.sh` started them). Last column: the "
        f"whole machine's load in the window, CPU seconds / (wall {X} {nproc} cores).\n\n"
        + header(
            "run",
            "worker / consumer",
            "Resonate server",
            "Kafka broker",
            "PostgreSQL",
            "harness",
            "machine busy",
        )
        + "\n"
        + "\n".join(out)
        + "\n"
    )


def _profile(results: dict[str, Any]) -> str:
    runs = Runs(results)
    pc = results.get("profile_counts") or {}
    pw = results.get("profile_worker") or {}
    lines = ["## Profile: where the time goes\n"]
    if pc:
        lines.append(
            "Counted in-process (`benchmarks/child.py:profile_counts`: the project's `ResonateRuntime`, "
            "`SqlRecordStore` and Kafka publisher against the real server; 100 one-batch workflows, "
            f"then one workflow of {pc.get('big_batches')} batches; HTTP requests counted at "
            "the worker's `KeepAliveRemoteStore._send` and `requests.Session.send`, TCP connections at "
            "`http.client.HTTPConnection.connect` and urllib3's `_new_conn`, SQL statements at "
            "SQLAlchemy's `before_cursor_execute`).\n"
        )
        lines.append(
            header("cost", "per one-batch workflow", "per extra batch", "mean latency in this probe (ms)")
        )
        http_w, http_b = pc.get("per_workflow_http", {}), pc.get("per_batch_http", {})
        for k in sorted(set(http_w) | set(http_b), key=lambda k: -http_w.get(k, 0)):
            lines.append(
                row(
                    f"HTTP `{k}`",
                    _f(http_w.get(k), 2),
                    _f(http_b.get(k), 2),
                    _f(pc.get("http_mean_ms", {}).get(k), 1),
                )
            )
        tot_w = sum(v for k, v in http_w.items() if "long-poll" not in k)
        tot_b = sum(v for k, v in http_b.items() if "long-poll" not in k)
        lines.append(row("**HTTP requests, total**", f"**{_f(tot_w, 2)}**", f"**{_f(tot_b, 2)}**", ""))
        lines.append(
            row(
                "new TCP connections",
                _f(pc.get("per_workflow_connections"), 2),
                _f(pc.get("per_batch_connections"), 2),
                "",
            )
        )
        if pc.get("per_workflow_loggers") is not None:
            lines.append(
                row(
                    "new `logging.Logger` objects (never freed)",
                    _f(pc.get("per_workflow_loggers"), 2),
                    _f(pc.get("per_batch_loggers"), 2),
                    "",
                )
            )
        sql_w, sql_b = pc.get("per_workflow_sql", {}), pc.get("per_batch_sql", {})
        for k in sorted(set(sql_w) | set(sql_b)):
            lines.append(row(f"SQL `{k}`", _f(sql_w.get(k), 2), _f(sql_b.get(k), 2), ""))
        lines.append(
            f"\n`begin_run` called sequentially in-process while the earlier workflows run: p50 "
            f"{_f(pc.get('begin_run_p50_ms'), 1)} ms, p99 {_f(pc.get('begin_run_p99_ms'), 1)} ms.\n"
        )
        target, group = pc.get("invoke_target"), pc.get("resonate_group")
        if target:
            ok = target.endswith(f"@{group}")
            lines.append(
                f"Recovery target of a started workflow (its root promise's `resonate:invoke` tag): "
                f"`{target}`; the workers poll `poll://any@{group}`. "
                + (
                    "They match."
                    if ok
                    else "**They differ**: when a worker dies while a workflow is not sleeping, the "
                    "server re-dispatches its task to a group no worker polls, so no other worker "
                    "resumes it (see finding 5)."
                )
                + "\n"
            )
    ka, nc = runs.med("keepalive", "keepalive", "rate"), runs.med("keepalive", "new_connection", "rate")
    if ka and nc:
        lines.append(
            "**What-if, keep-alive connections**: the sequential raw create loop through the SDK's "
            "`RemoteStore` (a new TCP connection per request): "
            f"{runs.spread('keepalive', 'new_connection', 'rate')} creates/s, p50 "
            f"{_f(runs.med('keepalive', 'new_connection', 'p50_ms'), 2)} ms; the same loop through "
            "one keep-alive `requests.Session` per thread (`benchmarks/child.py:_keepalive_store`): "
            f"{runs.spread('keepalive', 'keepalive', 'rate')} creates/s, p50 "
            f"{_f(runs.med('keepalive', 'keepalive', 'p50_ms'), 2)} ms \u2014 "
            f"**{_r(runs.ratio('keepalive', 'keepalive', 'new_connection', 'rate'))}** for one sequential "
            "caller, which is what the SDK's bridge thread is.\n"
        )
    lines.append(_cpu_table(results))
    run = pw.get("run", {})
    for phase, title in (
        ("handoff_phase", "while the messages are handed off"),
        ("drain_phase", "after the hand-off, while the workflows finish"),
    ):
        threads = pw.get(phase) or {}
        if not threads:
            continue
        lines.append(
            f"**py-spy, {title}** \u2014 a live `record-deleter worker`, {run.get('n', 0):,} one-batch "
            f"records on SQLite (hand-off {_f(run.get('handoff_rate'))} msg/s, end to end "
            f"{_f(run.get('e2e_rate'), 1)} "
            "records/s); all threads, idle included; share of each thread's wall time:\n"
        )
        lines.append(header("thread", "role", "where its wall time goes", "top on-CPU frames"))
        for label, t in threads.items():
            shares = ", ".join(f"{k} {v * 100:.0f}%" for k, v in list(t["shares"].items())[:5] if v >= 0.01)
            top = "; ".join(f"`{k}` {v * 100:.0f}%" for k, v in t["top_cpu_frames"][:3] if v >= 0.01)
            count = f" {X}{t['threads']}" if t.get("threads", 1) > 1 else ""
            lines.append(row(f"{label}{count}", _ROLES.get(label, ""), shares, top or NA))
        lines.append("")
    return "\n".join(lines) + "\n"


def _next(out: list[str]) -> int:
    """The number of the next finding (items start with their number; suggestion lines do not)."""
    return sum(1 for x in out if x[:1].isdigit()) + 1


def _findings(results: dict[str, Any]) -> str:
    """Findings and suggestions, with this run's numbers filled in."""
    runs = Runs(results)
    pc = results.get("profile_counts") or {}
    pw = results.get("profile_worker") or {}
    drain = pw.get("drain_phase") or {}
    hand = pw.get("handoff_phase") or {}
    bridge = drain.get("bridge", {}).get("shares", {})
    bridge_wait = bridge.get("waiting for Resonate server response", 0) + bridge.get(
        "opening TCP connections", 0
    )
    bridge_idle = bridge.get("idle (queue/condition/sleep)", 0)
    proc = drain.get("processor", {}).get("shares", {})
    proc_idle = proc.get("idle (queue/condition/sleep)", 0)
    pool = hand.get("handoff", {}).get("shares", {})
    pool_wait = pool.get("waiting for Resonate server response", 0) + pool.get("opening TCP connections", 0)
    per_wf = sum(v for k, v in pc.get("per_workflow_http", {}).items() if "long-poll" not in k)
    per_b = sum(v for k, v in pc.get("per_batch_http", {}).items() if "long-poll" not in k)
    create_p50 = runs.med("handoff", "promise_create_seq", "p50_ms")
    e2e = runs.med("e2e", "worker1_sqlite", "e2e_rate")
    e2e2 = runs.med("e2e", "worker2_sqlite", "e2e_rate")
    naive = runs.med("e2e", "naive_sqlite", "e2e_rate")
    wf_s = runs.med("deletion", "sqlite_1000_workflow", "seconds")
    wf_b = runs.med("deletion", "sqlite_1000_workflow", "batches")
    conc = results.get("handoff_concurrency") or {}
    conc_n = (conc.get("used") or conc.get("default")) if conc.get("supported") else 1
    h1 = runs.med("handoff", "worker1", "handoff_rate")
    h2 = runs.med("handoff", "worker2", "handoff_rate")
    ka = runs.ratio("keepalive", "keepalive", "new_connection", "rate")
    bridge_ms = per_wf * create_p50 if per_wf and create_p50 else None
    out = ["### Findings and suggestions\n"]
    out.append(
        "1. **The end-to-end limit is the SDK's bridge thread: one sequential HTTP round trip after "
        f"another.** A one-batch workflow costs {_f(per_wf, 1)} requests to the Resonate server "
        "(create-with-task, two step promises created and resolved, the root resolved, the task "
        f"completed) and every extra batch {_f(per_b, 1)} (its step promise created and resolved). "
        "The SDK sends all of them from its single `bridge` thread, one at a time (over one "
        f"keep-alive connection per thread since the worker's `KeepAliveRemoteStore`: "
        f"{_f(pc.get('per_workflow_connections'), 2)} new connections per workflow; the SDK's own "
        "store opens one per request). At the uncontended "
        f"{_f(create_p50, 1)} ms per request (raw create p50) that is ~{_f(bridge_ms, 0)} ms of "
        f"bridge time per record, ~{_f(1000 / bridge_ms if bridge_ms else None)} records/s per process; "
        f"measured {_f(e2e, 1)} records/s end to end (SQLite, 1 worker) against {_f(naive)} for the "
        f"naive consumer, and {_f(wf_b / wf_s if wf_b and wf_s else None)} batches/s for one record "
        "at batch 1,000."
        + (
            f" In the live worker after the hand-off, the bridge spent {bridge_wait * 100:.0f}% of its "
            f"wall time waiting for the server or connecting and {bridge_idle * 100:.0f}% idle, while "
            f"the step threads were {proc_idle * 100:.0f}% idle: the bridge is the bottleneck, not the "
            "SQL nor Kafka."
            if bridge
            else ""
        )
    )
    create_n = runs.med("handoff", "promise_create_threads", "rate")
    create_1 = runs.med("handoff", "promise_create_seq", "rate")
    par = _ratio(create_n, create_1)
    threads = results.get("mode", {}).get("threads", 4)
    if ka is None:
        keep = "not measured in this run"
    elif ka < 1.1:
        keep = (
            f"measured {_r(ka)} for a sequential caller in this run, i.e. no gain above the noise: on "
            "loopback the connect is cheap next to the server's own latency"
        )
    else:
        keep = f"measured {_r(ka)} for a sequential caller"
    out.append(
        "   *Suggestions, biggest first*: (a) **parallel bridges** \u2014 the server answers "
        f"{threads} concurrent callers {_r(par)} faster than one sequential caller (raw create, "
        "section 1), and the bridge is one sequential caller per `Resonate` instance: run several "
        "worker processes"
        + (f" (2 workers: {_f(e2e2, 1)} records/s)" if e2e2 else "")
        + ", or several `Resonate` instances (each with its own bridge) per process with records "
        "sharded across them by id (not done: the SDK's poller, heartbeats and recovery are per "
        "instance); (b) **fewer round trips per record** \u2014 7 per one-batch record is two steps "
        "plus the root's bookkeeping; for multi-batch records, done: without a pause a delete step "
        "deletes batches for up to `WORKFLOW_STEP_SECONDS` before it checkpoints (section 4); "
        + _store_suggestion(results)
        + "; (d) keep-alive connections, done in `adapters/resonate_runtime.py` over `http.client` "
        f"(half the client CPU per request of `requests`): the keep-alive what-if above {keep}."
    )
    ratio_h = _ratio(h1, e2e)
    out.append(
        f"{_next(out)}. **The hand-off** is one `POST /promises/task` per message (`begin_run`), on {conc_n} "
        f"thread{'s' if conc_n != 1 else ''} per worker: {_f(h1)} msg/s with 1 worker, {_f(h2)} "
        "with 2"
        + (
            f"; during the hand-off phase the pool threads spent {pool_wait * 100:.0f}% of their wall "
            "time waiting for the server or connecting"
            if pool
            else ""
        )
        + f". It outruns the workflow path {_r(ratio_h, 0)} (section 2), so a worker's sustainable "
        "rate is its end-to-end rate: a faster hand-off only grows the in-flight backlog (and the "
        "worker's memory: section 5's peak RSS at 10\u00d7 the messages), until "
        "`WORKER_MAX_IN_FLIGHT` pauses polling. What keeps the hand-off itself below the threaded "
        "raw-create rate: the server's latency, and the workflows running in the same process on "
        "the same GIL."
    )
    sql_b = pc.get("per_batch_sql", {})
    if sql_b:
        store_raw = runs.ratio("deletion", "postgres_100_store", "postgres_100_sql", "rate")
        out.append(
            f"{_next(out)}. **SQL per batch**: "
            f"{', '.join(f'{_f(v, 2)} {k}' for k, v in sql_b.items())} \u2014 the "
            "batched DELETE and the audit INSERT in one transaction; the `rows left?` probe runs only "
            "when a batch comes up short (statements are built once). Against the bare loop that "
            f"costs little at batch 10,000 but shows at small batches (PostgreSQL batch 100: store "
            f"loop at {_pct(store_raw)} of the bare DELETE): the transaction per batch, with its "
            "audit row, is the unit of crash safety."
        )
    pool_log = pool.get("on CPU: logging", 0)
    acquire = sum(v for k, v in hand.get("handoff", {}).get("top_cpu_frames", []) if "Handler.acquire" in k)
    out.append(
        f"{_next(out)}. **Logging**: one INFO line per hand-off, per delete step and per "
        "completion (polls and SQL batches only at DEBUG since this tree), "
        "all through one stream handler and its lock"
        + (
            f". In the hand-off phase the hand-off threads spent {pool_log * 100:.0f}% of their wall "
            f"time in logging, {acquire * 100:.0f}% waiting in `Handler.acquire` for the handler "
            "lock that the pool threads, the bridge and the step threads share"
            if pool
            else ""
        )
        + ". A `QueueHandler`, so threads do not write under the lock, would take the rest off the "
        "hot path (not done)."
    )
    target, group = pc.get("invoke_target"), pc.get("resonate_group")
    if target and not target.endswith(f"@{group}"):
        out.append(
            f"{_next(out)}. **Correctness, found while building these benchmarks**: workflows are "
            "started with "
            f"the SDK's default target, so their root promise says `resonate:invoke = {target}`, not "
            "the worker group. A task whose worker died while it was running (not during a durable "
            "sleep, which resumes through a callback to the group) is re-dispatched by the server to "
            "`poll://any@default`, which no worker polls: another worker in the group never resumes "
            "it. Checked by hand: worker A SIGKILLed mid-record (pause 0, ttl 3 s), worker B in the "
            "same group idle for 25 s, the record stayed pending; with `.options(target=<group>)` on "
            "the registered workflow, B resumed it at the next batch. The server also keeps "
            "re-dispatching such tasks (`connection not found` in its log), which cost it CPU "
            "until the promises are completed. The benchmark stops workers only after their "
            "workflows are durably complete, or cancels what a killed run left, for that reason."
        )
    if pc.get("per_workflow_loggers"):
        n_wf = 100_000
        per = pc["per_workflow_loggers"]
        us0, us1 = pc.get("set_level_us_at_start"), pc.get("set_level_us_at_end")
        l0, l1 = pc.get("loggers_at_start") or 0, pc.get("loggers_at_end") or 0
        slope = (us1 - us0) / (l1 - l0) if us0 is not None and us1 is not None and l1 > l0 else None
        proj = slope * per * n_wf / 1000 if slope else None
        out.append(
            f"{_next(out)}. **A leak that makes every record dearer than the last**: the SDK builds a "
            "`ContextLogger` for every workflow and step context \u2014 "
            '`logging.getLogger(f"resonate:{cid}:{id}")` with its own `StreamHandler`, then '
            f"`setLevel` \u2014 {_f(per, 1)} new loggers per one-batch workflow, "
            f"{_f(pc.get('per_batch_loggers'), 1)} per extra batch, never removed from "
            "`logging.Logger.manager.loggerDict`. Memory grows with every record (peak RSS, section "
            "5), and each `setLevel` clears the cache of *every* logger in the process "
            "(`Manager._clear_cache`, on the bridge's CPU frames above): one call took "
            f"{_f(us0, 1)} \u00b5s with {l0:,} loggers and {_f(us1, 1)} \u00b5s with {l1:,}, so after "
            f"{n_wf:,} records each new context would pay ~{_f(proj, 1)} ms (linear extrapolation) "
            "on the single bridge thread. *Done in `f3f46fc`* (after this tree's run if the tree "
            "above is older): the runtime drops a finished workflow's `resonate:<id>:<id>[.n]` "
            "loggers in its completion callback; the loggers of workflows still in flight remain, "
            "which `WORKER_MAX_IN_FLIGHT` bounds (not in these benchmarks, which set it to 0)."
        )
    return "\n".join(out) + "\n"


def _store_suggestion(results: dict[str, Any]) -> str:
    pts = (results.get("store_growth") or {}).get("points") or []
    if len(pts) < 2:
        return "(c) **the server itself** \u2014 its per-request latency is the unit cost of everything above"
    first, last = pts[0], pts[-1]
    ratio = _ratio(last["rate"], first["rate"])
    falling = all(b["rate"] <= a["rate"] for a, b in itertools.pairwise(pts))
    rates = ", ".join(_f(p["rate"]) for p in pts)
    sizes = ", ".join(f"{p['completed_promises']:,}" for p in pts)
    trend = (
        f"its sequential create rate fell to {_pct(ratio)} after {last['completed_promises']:,} "
        f"completed promises in this run ({rates}/s, section 5): prune completed promises, or try "
        "its PostgreSQL store (`RESONATE_STORE=postgres`)"
        if ratio is not None and ratio < 0.75 and falling
        else f"the store probe of this run ({rates} creates/s at "
        f"{sizes} completed promises) shows "
        "no consistent store-size effect above the machine's noise"
    )
    return (
        "(c) **the server itself** \u2014 its per-request latency is the unit cost of everything above; "
        + trend
    )


def _how(results: dict[str, Any]) -> str:
    lines = [
        "## How to run\n",
        "```sh\n"
        "scripts/bench.sh                 # quick (= make bench): this page + benchmarks/results.json\n"
        "scripts/bench.sh --full          # 5 repeats, growth to 100k messages, both databases everywhere\n"
        "scripts/bench.sh --smoke         # tiny sizes, one repeat: checks the harness\n"
        "scripts/bench.sh --only handoff,deletion --handoff-concurrency 16\n"
        "```\n",
        "`scripts/bench.sh` provisions Kafka, the Resonate server and PostgreSQL with "
        "`scripts/services.sh` in its own state dir (`RECORD_DELETER_SERVICES_DIR`, default a new "
        "temp dir) unless all of `KAFKA_BOOTSTRAP_SERVERS`, `RESONATE_URL`, "
        "`RESONATE_MESSAGE_SOURCE_PORT` and `DATABASE_URL_POSTGRES` are given, installs the "
        "benchmark-only profiler py-spy into `.venv` if missing, runs `python -m benchmarks.run`, "
        "and stops what it started. Details: `benchmarks/README.md`.\n",
    ]
    errs = results.get("errors") or []
    if errs:
        lines.append("## Errors during this run\n")
        lines += [f"- {e['what']}: `{e['error'][:300]}`" for e in errs]
        lines.append("")
    secs = results.get("section_seconds") or {}
    if secs:
        lines.append(
            "Section run times: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in secs.items()) + ".\n"
        )
    return "\n".join(lines)


def main() -> None:
    here = Path(__file__).resolve()
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else here.with_name("results.json")
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else here.parents[1] / "BENCHMARKS.md"
    out.write_text(render(json.loads(path.read_text())))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
