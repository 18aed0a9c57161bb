"""Concurrent hand-offs call begin_run from many threads on a runtime that has not started yet.

resonate-sdk 0.6.7's `Resonate.start()` checks `Thread.is_alive()` before `Thread.start()`, so
racing first calls start the same SDK threads twice and the process dies. ResonateRuntime starts
the SDK once under a lock; this runs the race in fresh subprocesses (an SDK crash is os._exit).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.harness import ROOT

pytestmark = pytest.mark.unit

SCRIPT = textwrap.dedent(
    """
    import threading
    from record_deleter.adapters.memory_broker import InMemoryBroker
    from record_deleter.adapters.memory_store import InMemoryRecordStore
    from tests import builders
    from record_deleter.domain.model import InboundMessage, RecordId

    broker = InMemoryBroker()
    broker.create_topic("done"); broker.create_topic("failed")
    store = InMemoryRecordStore()
    ids = [RecordId(f"r{i}") for i in range(64)]
    for rid in ids:
        store.add_record(rid, 3)
    publisher = builders.publisher(broker, "done", "failed")
    runtime = builders.runtime(
        builders.resonate("local"), store, publisher, retry=builders.step_retry(delay=0.01)
    )
    messages = [InboundMessage("requests", 0, i, b"", None, (), 1000 + i) for i in range(len(ids))]
    requests = list(zip(ids, messages))
    barrier = threading.Barrier(16)
    def go(chunk):
        barrier.wait()
        for rid, message in chunk:
            runtime.start(rid, message)
    threads = [threading.Thread(target=go, args=(requests[i::16],)) for i in range(16)]
    for t in threads: t.start()
    for t in threads: t.join()
    for message in messages:
        runtime.wait(runtime.request_key(message), 30)
    assert len(broker.messages("done")) == 64, len(broker.messages("done"))
    runtime.stop()
    print("ok")
    """
)


@pytest.mark.parametrize("run", range(4))
def test_sixteen_threads_starting_workflows_on_a_fresh_runtime(run: int) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
