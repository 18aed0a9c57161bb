"""Figures of running processes: the worker's Prometheus endpoint, CPU time and peak RSS."""

from __future__ import annotations

import contextlib
import os
import resource
import time
import urllib.request
from pathlib import Path

from .endpoints import services_dir

_TICK = os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> dict[str, float]:
    """The samples of the Prometheus endpoint on `port` (name{labels} -> value); {} if it is down."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
    except OSError:
        return {}
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def peak_rss_kb(pid: int) -> int:
    """VmHWM of a live process (kB); 0 once it is gone."""
    with contextlib.suppress(OSError), Path(f"/proc/{pid}/status").open() as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, own utime+stime ticks, reaped children's ticks) of a live process."""
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


def cpu_seconds(root: int) -> float:
    """CPU seconds of a process, its live descendants and its reaped children (nan if it is gone)."""
    stats = {int(p): st for p in os.listdir("/proc") if p.isdigit() and (st := _stat(int(p))) is not None}
    if root not in stats:
        return float("nan")
    children: dict[int, list[int]] = {}
    for pid, (ppid, _own, _reaped) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = stats[root][2], [root]
    while stack:
        pid = stack.pop()
        total += stats[pid][1]
        stack.extend(children.get(pid, []))
    return total / _TICK


def service_pids() -> dict[str, int]:
    """PIDs of the services `scripts/services.sh` started (none when they are external)."""
    out: dict[str, int] = {}
    if not os.environ.get("RECORD_DELETER_SERVICES_OWNED"):
        return out
    for name in ("kafka", "resonate", "postgres"):
        with contextlib.suppress(OSError, ValueError):
            out[name] = int((services_dir() / f"{name}.pid").read_text().strip())
    return out


class CpuMeter:
    """CPU seconds used by each named process (and this one, `harness`) between start and stop."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start = self._sample()

    def _sample(self) -> dict[str, float]:
        out = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out["harness"] = usage.ru_utime + usage.ru_stime
        out["wall"] = time.monotonic()
        return out

    def stop(self) -> dict[str, float]:
        end = self._sample()
        return {k: end[k] - self._start[k] for k in end}
