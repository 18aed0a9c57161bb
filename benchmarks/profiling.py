"""Sampling profile of a live worker process (py-spy, every thread, idle time included).

py-spy is a benchmark-only tool (`pip install py-spy` into .venv; scripts/bench.sh does it). It
attaches to the worker subprocess by PID, so the worker runs exactly as deployed. The raw
(collapsed-stack) output is summarised per thread: where wall time goes — waiting for the Resonate
server's HTTP response, idle on a queue, polling Kafka, or on-CPU in which library.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import PY


def py_spy() -> str | None:
    candidate = Path(PY).with_name("py-spy")
    if candidate.exists():
        return str(candidate)
    return shutil.which("py-spy")


class Sampler:
    """`py-spy record --pid PID` until stop(); writes collapsed stacks to `out`."""

    def __init__(self, pid: int, out: Path, rate: int = 100) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.out = out
        self._err = out.with_suffix(".log").open("wb")
        self.proc = subprocess.Popen(
            [
                *(exe, "record", "--pid", str(pid), "--rate", str(rate), "--idle", "--threads"),
                *("--nonblocking", "--format", "raw", "--output", str(out)),
            ],
            stdout=self._err,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._err.close()


# What a sample's stack is doing, first match wins (markers are substrings of frames).
WAIT_HTTP = ("_read_status", "HTTPResponse.begin", "SocketIO.readinto")
CONNECT = ("create_connection", "_new_conn", "HTTPConnection.connect")
IDLE = (
    "Condition.wait",
    "Queue.get",
    "Event.wait",
    "sleep (",
    "Thread.join",
    "_wait_for_tstate_lock",
    "_worker (concurrent/futures/thread.py",  # an executor thread waiting for work
    "select (selectors.py",
    "serve_forever",
)
LIBS = (
    ("resonate HTTP client (requests/urllib3)", ("requests/", "urllib3/", "http/client.py")),
    ("SQLAlchemy + driver", ("sqlalchemy/", "psycopg", "sqlite3")),
    ("Kafka client", ("confluent_kafka", "adapters/kafka.py")),
    ("logging", ("logging/",)),
    ("prometheus", ("prometheus_client",)),
    ("resonate SDK (scheduler, encoders)", ("resonate/",)),
    ("project code", ("domain/", "adapters/", "entrypoints/")),
)


def _frame_name(frame: str) -> str:
    name, _, loc = frame.partition(" (")
    path = loc.rstrip(")").rsplit(":", 1)[0]
    short = "/".join(path.split("/")[-2:])
    return f"{name} ({short})"


def _thread_label(frame: str) -> str:
    """`thread (123): name` -> a stable label: numbered pool threads merged, SDK roles named."""
    label = frame.split(":", 1)[1].strip() if ":" in frame else "unnamed thread"
    if label.startswith("Thread-") and "(" in label:
        target = label.split("(", 1)[1].rstrip(")")
        label = {"_run": "processor", "serve_forever": "metrics endpoint"}.get(target, f"thread {target}")
    label = re.sub(r"_\d+$", "", label)  # handoff_0, handoff_1, ... -> handoff
    return label or "thread"


def summarize(raw: Path, top: int = 6) -> dict[str, Any]:
    """Per thread (same-named threads merged): samples, shares of wall time, top on-CPU frames."""
    if not raw.exists():
        return {}
    threads: dict[str, Counter[str]] = defaultdict(Counter)
    frames_cpu: dict[str, Counter[str]] = defaultdict(Counter)
    thread_ids: dict[str, set[str]] = defaultdict(set)
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if not frames[0].startswith("thread"):
            continue
        label = _thread_label(frames[0])
        thread_ids[label].add(frames[0].split(")")[0])
        body = frames[1:]
        joined = ";".join(body)
        leaf = body[-1] if body else ""
        if "iter_lines" in joined or "read_chunked" in joined:
            what = "long-poll (idle)"
        elif any(m in leaf for m in WAIT_HTTP):
            what = "waiting for Resonate server response"
        elif any(m in joined for m in CONNECT):
            what = "opening TCP connections"
        elif any(m in leaf for m in IDLE):
            what = "idle (queue/condition/sleep)"
        elif "KafkaRequestSource.poll" in leaf or leaf.startswith("poll (") or "consume (" in leaf:
            what = "Kafka poll (waiting in librdkafka)"
        elif "ConfirmedProducer.send" in leaf or "flush (" in leaf:
            what = "waiting for a Kafka delivery report"
        elif any(m in leaf for m in ("do_execute", "do_commit", "do_rollback", "connect (")):
            what = "SQL statement in the database driver"
        else:
            what = "on CPU: other"
            for name, markers in LIBS:
                if any(m in joined for m in markers):
                    what = f"on CPU: {name}"
                    break
            if leaf:
                frames_cpu[label][_frame_name(leaf)] += n
        threads[label][what] += n
    out: dict[str, Any] = {}
    busiest = max((sum(c.values()) / max(1, len(thread_ids[k])) for k, c in threads.items()), default=0)
    for label, counts in sorted(threads.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(counts.values())
        per_thread = total / max(1, len(thread_ids[label]))
        if per_thread < 0.1 * busiest:
            continue  # short-lived threads (e.g. one per metrics request): not a steady cost
        out[label] = {
            "threads": len(thread_ids[label]),
            "samples_per_thread": per_thread,
            "shares": {k: v / total for k, v in counts.most_common()},
            "top_cpu_frames": [(k, v / total) for k, v in frames_cpu[label].most_common(top)],
        }
    return out


def stop_quietly(sampler: Sampler | None) -> None:
    if sampler is not None:
        with contextlib.suppress(Exception):
            sampler.stop()
