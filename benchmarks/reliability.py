"""Repeat the failure-mode system tests and print RELIABILITY.md's tables from what they measured.

    python -m benchmarks.reliability --runs 3                  # every scenario, 3 times
    python -m benchmarks.reliability --runs 5 -k soak           # one scenario (pytest -k)
    python -m benchmarks.reliability --from results.jsonl       # only render collected figures

Each test in tests/system/test_failures.py prints one `RELIABILITY {json}` line when it passes
(figures of that run) and appends it to $RD_RELIABILITY_OUT; this runner sets that file, runs
pytest `--runs` times, records which tests failed in each run (from pytest's JUnit XML), and
renders one table per scenario: a row per run and a total row. Needs the services of the suite
(`scripts/services.sh up` and its env file sourced; see RELIABILITY.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEST_FILE = "tests/system/test_failures.py"

COLUMNS = (
    ("run", "run"),
    ("crashes_injected", "crashes injected"),
    ("worker_exits", "worker exits (codes)"),
    ("messages", "messages"),
    ("lost", "lost"),
    ("duplicate_completions", "duplicate completions"),
    ("re_executed_batches", "re-executed batches"),
    ("recovery_seconds", "recovery s"),
    ("run_seconds", "test s"),
)
SUMMED = (
    "crashes_injected",
    "worker_exits",
    "messages",
    "lost",
    "duplicate_completions",
    "re_executed_batches",
)


def run_pytest(runs: int, select: str | None, out: Path, label: str, logs: Path) -> list[dict[str, Any]]:
    """Run the failure tests `runs` times; returns one {run, failed, seconds} per run.

    Each run's worker logs stay in `logs`/run-N (pytest --basetemp) for a post-mortem."""
    outcomes = []
    for run in range(1, runs + 1):
        with tempfile.TemporaryDirectory() as tmp:
            junit = Path(tmp) / "junit.xml"
            cmd = [sys.executable, "-m", "pytest", TEST_FILE, "-q", "-s", "-p", "no:cacheprovider"]
            cmd += ["--junitxml", str(junit), "--basetemp", str(logs / f"run-{run}")]
            if select:
                cmd += ["-k", select]
            env = {
                **os.environ,
                "RD_RELIABILITY_OUT": str(out),
                "RD_RELIABILITY_RUN": str(run),
                "RD_RELIABILITY_LABEL": label,
            }
            started = time.monotonic()
            print(f"== run {run}/{runs}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
            subprocess.run(cmd, cwd=ROOT, env=env, check=False, stdout=sys.stderr)
            failed = failures(junit)
            seconds = time.monotonic() - started
            print(f"== run {run}: {len(failed)} failed in {seconds:.0f}s {failed}", file=sys.stderr)
            outcomes.append({"run": run, "failed": failed, "seconds": round(seconds)})
    return outcomes


def failures(junit: Path) -> list[str]:
    if not junit.exists():
        return ["<pytest produced no report>"]
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            out.append(case.get("name", "?"))
    return out


# scenario (the part before "[") -> its own figures, shown as extra columns
EXTRA_COLUMNS = {
    "sigkill-restart": (
        ("batches_done_at_kill", "batches done at kill"),
        ("first_batch_after_kill_seconds", "first batch after kill s"),
        ("batches_needed", "batches needed"),
        ("batches_executed", "batches executed"),
    ),
    "failover-two-workers": (
        ("batches_done_at_kill", "batches done at kill"),
        ("batches_needed", "batches needed"),
        ("batches_executed", "batches executed"),
    ),
    "duplicate-requests": (
        ("requests_per_record", "requests per record"),
        ("batches_needed", "batches needed"),
        ("batches_executed", "batches executed"),
    ),
    "publish-window": (
        ("extra_publishes_of_faulted_record", "extra publishes of the faulted record"),
        ("delete_batches_rerun_for_faulted_record", "its delete batches re-run"),
    ),
    "outage": (
        ("down_seconds", "down s"),
        ("batches_needed", "batches needed"),
        ("batches_executed", "batches executed"),
    ),
    "poison-stream": (
        ("poison_classes", "poison classes"),
        ("dead_lettered", "dead-lettered"),
    ),
    "metrics": (
        ("m_messages_consumed_total", "consumed"),
        ("m_messages_handed_off_total", "handed off"),
        ("m_messages_dead_lettered_total", "dead-lettered"),
        ("m_batches_deleted_total", "batches"),
        ("m_rows_deleted_total", "rows"),
        ("m_completions_published_total", "completions"),
        ("m_handoff_seconds_count", "hand-off latency count"),
        ("workflows_in_flight_during_run", "in flight during run"),
    ),
    "soak": (
        ("seed", "seed"),
        ("handoff_wait_median_seconds", "hand-off wait median s"),
        ("handoff_wait_max_seconds", "hand-off wait max s"),
        ("max_extra_batches_per_record", "max re-executed per record"),
        ("batches_needed", "batches needed"),
        ("batches_executed", "batches executed"),
    ),
}


def cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key, "")
    if key == "worker_exits" and row.get("worker_exit_codes"):
        codes = ", ".join(f"{n}x exit {c}" for c, n in sorted(row["worker_exit_codes"].items()))
        return f"{value} ({codes})"
    if isinstance(value, float) and value.is_integer() and key.startswith("m_"):
        return str(int(value))
    return str(value)


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    """Metrics of the endpoint test become m_<name> columns."""
    out = {k: v for k, v in row.items() if k != "metrics"}
    for name, value in (row.get("metrics") or {}).items():
        out[f"m_{name}"] = value
    return out


def render(rows: list[dict[str, Any]], outcomes: list[dict[str, Any]] | None) -> str:
    by_scenario: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_scenario[row["scenario"]].append(flatten(row))
    out = []
    for scenario, items in by_scenario.items():
        columns = COLUMNS + EXTRA_COLUMNS.get(scenario.split("[")[0], ())
        label = items[0].get("label")
        out.append(f"#### {scenario}" + (f" ({label})" if label else "") + "\n")
        out.append("| " + " | ".join(title for _, title in columns) + " |")
        out.append("|" + "---|" * len(columns))
        for row in items:
            out.append("| " + " | ".join(cell(row, key) for key, _ in columns) + " |")
        total = {key: sum(int(r.get(key) or 0) for r in items) for key in SUMMED}
        recoveries = [float(r["recovery_seconds"]) for r in items if "recovery_seconds" in r]
        recovery = (
            f"median {statistics.median(recoveries):.1f}, max {max(recoveries):.1f}" if recoveries else ""
        )
        cells = {"run": f"**{len(items)} runs**", **{k: f"**{v}**" for k, v in total.items()}}
        cells["recovery_seconds"] = recovery
        out.append("| " + " | ".join(str(cells.get(key, "")) for key, _ in columns) + " |")
        out.append("")
    if outcomes:
        out.append("#### pytest outcome per run\n")
        out.append("| run | failed tests | seconds |")
        out.append("|---|---|---|")
        for o in outcomes:
            out.append(f"| {o['run']} | {', '.join(o['failed']) or 'none'} | {o['seconds']} |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1, help="how many times to run the tests (default 1)")
    parser.add_argument("-k", dest="select", help="pytest -k expression to pick scenarios")
    parser.add_argument("--out", type=Path, help="JSONL file to append figures to (default: a temp file)")
    parser.add_argument("--label", default="", help="a label stored with each figure (e.g. the revision)")
    parser.add_argument(
        "--logs", type=Path, help="where each run keeps its worker logs (default: a temp dir)"
    )
    parser.add_argument(
        "--from", dest="source", type=Path, help="render figures collected earlier; run nothing"
    )
    args = parser.parse_args()
    outcomes = None
    if args.source:
        path = args.source
    else:
        path = args.out or Path(tempfile.mkstemp(prefix="reliability-", suffix=".jsonl")[1])
        start = path.stat().st_size if path.exists() else 0
        logs = args.logs or Path(tempfile.mkdtemp(prefix="reliability-logs-"))
        logs.mkdir(parents=True, exist_ok=True)
        outcomes = run_pytest(args.runs, args.select, path, args.label, logs)
        print(f"figures appended to {path}; worker logs in {logs}", file=sys.stderr)
    text = path.read_text() if path.exists() else ""
    if outcomes is not None:
        text = text[start:]
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    print(render(rows, outcomes))
    return 1 if outcomes and any(o["failed"] for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
