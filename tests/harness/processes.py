"""Processes as deployed: `record-deleter` subprocesses configured only by environment variables,
their output kept in a log file and their structured events read as they are written, and a
supervisor that restarts every exit and counts it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .endpoints import ROOT, kafka_bootstrap, resonate_endpoint, unique
from .events import Event, EventLog, parse
from .metrics import peak_rss_kb

WORKER_COMMAND = ("-m", "record_deleter", "worker")
FAULT_WORKER_COMMAND = ("-m", "tests.system.fault_worker")
# The application's settings namespaces, and libpq's defaults: a child sees only what it is given
# (DATABASE_URL in particular names the shared PostgreSQL in the test environment).
SETTINGS_PREFIXES = (
    *("BROKER_", "DATABASE_", "RESONATE_", "WORKFLOW_", "WORKER_", "AUDIT_", "DASHBOARD_"),
    "PG",
)
# The shared Resonate server's basic-auth credentials (scripts/services.sh exports them): kept, so
# every worker talks to it; a private server without auth ignores them.
SHARED_CREDENTIALS = ("RESONATE_USERNAME", "RESONATE_PASSWORD")


def cli_env(**settings: str) -> dict[str, str]:
    """This environment without any application setting, plus `settings`; JSON event logs."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIXES) or k in SHARED_CREDENTIALS
    }
    env.pop("RECORD_DELETER_CONFIG", None)
    env.pop("RECORD_DELETER_SECRETS_DIR", None)
    env["WORKER_LOG_FORMAT"] = "json"
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def worker_env(database_url: str, **settings: str) -> dict[str, str]:
    """`cli_env` for a worker on the shared services: Kafka, the Resonate server (remote) and
    `database_url`, with a consumer group and a Resonate group of its own; `settings` add to or
    replace these."""
    resonate_url, poll_port = resonate_endpoint()
    return cli_env(
        **{
            "BROKER_KIND": "kafka",
            "BROKER_BOOTSTRAP_SERVERS": kafka_bootstrap(),
            "BROKER_GROUP": unique("workers"),
            "DATABASE_URL": database_url,
            "RESONATE_MODE": "remote",
            "RESONATE_URL": resonate_url,
            "RESONATE_MESSAGE_SOURCE_PORT": poll_port,
            "RESONATE_GROUP": unique("rg"),
            **settings,
        }
    )


def evidence_report(record_id: str, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """`record-deleter evidence ID --format json` as an operator runs it: (exit code, report)."""
    done = subprocess.run(
        [sys.executable, "-m", "record_deleter", "evidence", record_id, "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 0 intact, 1 broken: both print the report
    return done.returncode, json.loads(done.stdout)


def run_cli(*args: str, env: dict[str, str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "record_deleter", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"record-deleter {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
        )
    return result


class Process:
    """A Python subprocess whose stdout+stderr go to `log` and whose events go to `events`."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        events: EventLog | None = None,
    ) -> None:
        self.log = log
        self.events = events if events is not None else EventLog()
        self.peak_rss_kb = 0
        self._popen = subprocess.Popen(
            [sys.executable, *command],
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.pid = self._popen.pid
        self._reader = threading.Thread(target=self._read, name=f"read-{self.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._popen.stdout is not None
        with self.log.open("ab") as out:
            for line in self._popen.stdout:
                event = parse(line, time.time())
                if event is not None:
                    self.events.append(event)
                out.write(line)
                out.flush()

    def poll(self) -> int | None:
        return self._popen.poll()

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def alive(self) -> bool:
        return self._popen.poll() is None

    def signal(self, sig: int) -> None:
        if self._popen.poll() is None:
            self._popen.send_signal(sig)

    def wait(self, timeout: float | None = None) -> int:
        code = self._popen.wait(timeout)
        self._reader.join(10)
        return code

    def sample_rss(self) -> int:
        """Peak RSS so far (kB), remembered: /proc forgets it when the process exits."""
        self.peak_rss_kb = max(self.peak_rss_kb, peak_rss_kb(self.pid))
        return self.peak_rss_kb

    def stop(self, *, kill: bool = False, timeout: float = 20.0) -> int:
        """SIGTERM (SIGKILL with kill=True; also after `timeout`); the exit code."""
        self.sample_rss()
        self.signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            return self.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.text().splitlines()[-n:])


@contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[Process]:
    """A `record-deleter worker` process; SIGTERM (then SIGKILL) when the block ends."""
    proc = Process(WORKER_COMMAND, env, log)
    try:
        yield proc
    finally:
        proc.stop()


# ------------------------------------------------------------------------------------ supervisor
@dataclass
class Exit:
    slot: int
    generation: int
    code: int
    at: float
    injected: bool  # the test killed it on purpose
    final: bool  # the supervisor stopped it at the end (SIGTERM)


@dataclass
class Slot:
    index: int
    command: tuple[str, ...]
    env: dict[str, str]
    generation: int = 0
    proc: Process | None = None
    injected: bool = False
    procs: list[Process] = field(default_factory=list)

    @property
    def log(self) -> Path | None:
        return self.proc.log if self.proc is not None else (self.procs[-1].log if self.procs else None)

    @property
    def logs(self) -> list[Path]:
        return [p.log for p in self.procs]


class Supervisor:
    """What systemd or Kubernetes does for the crash-only worker: restart every exit, count it.

    `kill(i)` SIGKILLs slot i on purpose (counted as injected); any other exit (3 = a dependency
    stayed unreachable, 1 = the SDK ended the process, ...) is a crash the test reports. With
    `restart=False` a dead slot stays dead. Every process's events go to `self.events`.
    """

    def __init__(
        self,
        env: dict[str, str],
        logs: Path,
        size: int = 1,
        *,
        name: str = "worker",
        command: tuple[str, ...] = WORKER_COMMAND,
        restart: bool = True,
        restart_delay: float = 0.5,
        static_members: bool = False,
    ) -> None:
        """`static_members`: each slot keeps one Kafka group instance id across its restarts, as
        a StatefulSet's pods or systemd template units do (static membership, RELIABILITY.md)."""
        self._dir = logs
        self._name = name
        self._restart = restart
        self._restart_delay = restart_delay
        run = uuid.uuid4().hex[:8]
        self.slots = [
            Slot(
                i,
                command,
                {**env, "BROKER_RDKAFKA_GROUP_INSTANCE_ID": f"{name}-{run}-{i}"} if static_members else env,
            )
            for i in range(size)
        ]
        self.exits: list[Exit] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def __enter__(self) -> Supervisor:
        for slot in self.slots:
            self._spawn(slot)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _spawn(self, slot: Slot) -> None:
        slot.generation += 1
        slot.injected = False
        log = self._dir / f"{self._name}-{slot.index}.{slot.generation}.log"
        slot.proc = Process(slot.command, slot.env, log, EventLog())
        slot.procs.append(slot.proc)

    def _watch(self) -> None:
        restart_at: dict[int, float] = {}
        while not self._stopping.is_set():
            with self._lock:
                for slot in self.slots:
                    if slot.proc is None:
                        if slot.index in restart_at and time.monotonic() >= restart_at[slot.index]:
                            del restart_at[slot.index]
                            self._spawn(slot)
                        continue
                    code = slot.proc.poll()
                    if code is None:
                        continue
                    self.exits.append(
                        Exit(slot.index, slot.generation, code, time.monotonic(), slot.injected, False)
                    )
                    slot.proc = None
                    if self._restart:
                        restart_at[slot.index] = time.monotonic() + self._restart_delay
            self._stopping.wait(0.1)

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to slot `index` (counted as an injected crash) and wait until it is gone."""
        with self._lock:
            slot = self.slots[index]
            proc = slot.proc
            if proc is None:
                return
            slot.injected = True
            proc.signal(sig)
        proc.wait(30)

    def alive(self) -> list[int]:
        with self._lock:
            return [s.index for s in self.slots if s.proc is not None and s.proc.alive()]

    def all_events(self) -> list[Event]:
        return [e for s in self.slots for p in s.procs for e in p.events.all()]

    def log_text(self, index: int) -> str:
        """Every generation's log of slot `index`, concatenated."""
        return "".join(p.text() for p in self.slots[index].procs)

    def all_logs(self) -> str:
        return "".join(f"==== slot {s.index}\n{self.log_text(s.index)}" for s in self.slots)

    def crashes(self) -> list[Exit]:
        """Exits the test did not cause (not killed on purpose, not stopped at the end)."""
        return [e for e in self.exits if not e.injected and not e.final]

    def injected(self) -> list[Exit]:
        return [e for e in self.exits if e.injected]

    def exit_codes(self) -> dict[str, int]:
        return dict(Counter(str(e.code) for e in self.crashes()))

    def stop(self) -> None:
        """SIGTERM every live worker (clean stop, exit 0 expected), SIGKILL after 20 s."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._lock:
            live = [s for s in self.slots if s.proc is not None]
            for slot in live:
                assert slot.proc is not None
                slot.proc.signal(signal.SIGTERM)
            for slot in live:
                assert slot.proc is not None
                try:
                    code = slot.proc.wait(20)
                except subprocess.TimeoutExpired:
                    code = slot.proc.stop(kill=True)
                self.exits.append(
                    Exit(slot.index, slot.generation, code, time.monotonic(), slot.injected, True)
                )
                slot.proc = None

    def final_codes(self) -> list[int]:
        return [e.code for e in self.exits if e.final]

    def assert_clean_stop(self) -> None:
        """Every worker still running at the end stopped cleanly on SIGTERM (exit 0)."""
        codes = self.final_codes()
        assert codes, "no worker was running at the end"
        assert all(c == 0 for c in codes), f"exit codes on SIGTERM: {codes}\n{self.all_logs()[-3000:]}"


def first_handoffs(supervisor: Supervisor) -> dict[str, float]:
    """record id -> wall-clock time of its first `handed_off` event, over every worker process."""
    out: dict[str, float] = {}
    for event in supervisor.all_events():
        if event.name == "handed_off":
            record_id = str(event["record_id"])
            out[record_id] = min(out.get(record_id, event.at), event.at)
    return out


def holders(supervisor: Supervisor, record_ids: Sequence[str]) -> dict[int, int]:
    """slot -> how many of `record_ids` its latest process ran a delete step of (`step_deleted`)."""
    wanted = set(record_ids)
    out: dict[int, int] = {}
    for slot in supervisor.slots:
        if not slot.procs:
            continue
        latest = slot.procs[-1].events.all()
        seen = {str(e["record_id"]) for e in latest if e.name == "step_deleted"}
        out[slot.index] = len(seen & wanted)
    return out


def held_partitions(log_text: str) -> list[int]:
    """The partitions a worker holds, from its latest 'holding [..]' log line ([] before any);
    a JSON log line's message, or a text line."""
    messages = []
    for line in log_text.splitlines():
        text = line
        if line.startswith("{"):
            try:
                text = str(json.loads(line).get("message", ""))
            except ValueError:
                continue
        if "partitions" in text and "holding [" in text:
            messages.append(text)
    return json.loads(messages[-1].rsplit("holding ", 1)[1]) if messages else []


def check_errors(output: str) -> list[str]:
    """The error findings of `check` (which `worker` runs first) in a process's output, each as
    the text line reads (`record-deleter: error: ...`), whether it wrote text or JSON log lines."""
    found = []
    for line in output.splitlines():
        if line.startswith("record-deleter: error"):
            found.append(line)
        elif line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("logger") == "record_deleter.check" and obj.get("check") == "error":
                found.append(f"record-deleter: error: {obj.get('message', '')}")
    return found
